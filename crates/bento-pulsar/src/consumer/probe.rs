//! What the broker's stats say of a consumer that has heard nothing for a while.
//!
//! A quiet consumer is normal when nothing is published. It is stuck when the broker does not
//! know it any more (a re-subscribe after a broker restart that never completed), or when the
//! broker knows it, holds messages for its subscription, and still sends none: it holds no
//! flow permits for it, or it blocks it for too many unacknowledged messages. Re-creating the
//! consumer starts both afresh; what it had not acknowledged is redelivered.

use pulsar::proto::CommandConsumerStatsResponse;

/// Why a quiet consumer is re-created, if it is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The broker answers and may just have nothing to send.
    Alive,
    /// The broker does not answer for this consumer.
    Unknown,
    /// The broker holds `backlog` messages for the subscription and sends none.
    Starved {
        /// Messages waiting on the subscription.
        backlog: u64,
        /// Permits the broker holds for the consumer.
        permits: u64,
        /// The broker stopped sending for unacknowledged messages.
        blocked: bool,
    },
}

/// Reads the broker's answer to a quiet consumer's stats request (one answer per partition
/// consumer); `None` when there was no answer.
pub(super) fn verdict(stats: Option<&[CommandConsumerStatsResponse]>) -> Verdict {
    let Some(stats) = stats else {
        return Verdict::Unknown;
    };
    stats
        .iter()
        .find_map(|stats| {
            let backlog = stats.msg_backlog.unwrap_or(0);
            let permits = stats.available_permits.unwrap_or(u64::MAX);
            let blocked = stats.blocked_consumer_on_unacked_msgs.unwrap_or(false);
            (backlog > 0 && (permits == 0 || blocked)).then_some(Verdict::Starved {
                backlog,
                permits,
                blocked,
            })
        })
        .unwrap_or(Verdict::Alive)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(backlog: u64, permits: u64, blocked: bool) -> CommandConsumerStatsResponse {
        CommandConsumerStatsResponse {
            msg_backlog: Some(backlog),
            available_permits: Some(permits),
            blocked_consumer_on_unacked_msgs: Some(blocked),
            ..Default::default()
        }
    }

    #[test]
    fn no_answer_means_the_broker_lost_the_consumer() {
        assert_eq!(verdict(None), Verdict::Unknown);
    }

    #[test]
    fn nothing_to_send_is_alive() {
        assert_eq!(verdict(Some(&[stats(0, 0, false)])), Verdict::Alive);
        assert_eq!(verdict(Some(&[stats(0, 1000, true)])), Verdict::Alive);
    }

    #[test]
    fn a_backlog_with_permits_is_alive() {
        // The broker can send; a backlog of messages handed out and not yet settled counts too.
        assert_eq!(verdict(Some(&[stats(25, 500, false)])), Verdict::Alive);
    }

    #[test]
    fn a_backlog_without_permits_is_starved() {
        assert_eq!(
            verdict(Some(&[stats(1391, 0, false)])),
            Verdict::Starved {
                backlog: 1391,
                permits: 0,
                blocked: false
            }
        );
    }

    #[test]
    fn a_backlog_blocked_on_unacknowledged_messages_is_starved() {
        assert_eq!(
            verdict(Some(&[stats(0, 10, false), stats(7, 10, true)])),
            Verdict::Starved {
                backlog: 7,
                permits: 10,
                blocked: true
            }
        );
    }
}
