-- Bento's outbox: events committed with the business data, waiting for the relay.
-- seq orders the rows; per ordering key it is also commit order (see docs/outbox.md).
CREATE TABLE IF NOT EXISTS bento_outbox (
    seq          BIGSERIAL PRIMARY KEY,
    message_id   TEXT   NOT NULL,
    event_type   TEXT   NOT NULL,
    ordering_key TEXT,
    headers      TEXT   NOT NULL, -- JSON object: the envelope's wire headers
    payload      BYTEA  NOT NULL,
    created_at   BIGINT NOT NULL, -- Unix milliseconds
    published_at BIGINT           -- Unix milliseconds, set once the broker took the event
);
-- The relay reads only what is waiting; cleanup reads only what was published.
CREATE INDEX IF NOT EXISTS bento_outbox_pending ON bento_outbox (seq) WHERE published_at IS NULL;
CREATE INDEX IF NOT EXISTS bento_outbox_published ON bento_outbox (published_at) WHERE published_at IS NOT NULL;

-- Bento's durable inbox: one row per message a subscription handled, written in the
-- handler's own transaction.
CREATE TABLE IF NOT EXISTS bento_inbox (
    subscription TEXT   NOT NULL,
    message_id   TEXT   NOT NULL,
    handled_at   BIGINT NOT NULL,
    PRIMARY KEY (subscription, message_id)
);
CREATE INDEX IF NOT EXISTS bento_inbox_handled_at ON bento_inbox (handled_at);

-- Leases for work only one process may do at a time (the relay on SQLite; PostgreSQL uses
-- an advisory lock instead, which ends with the session that holds it).
CREATE TABLE IF NOT EXISTS bento_leases (
    name       TEXT   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_at BIGINT NOT NULL
);
