// Validates AsyncAPI documents with the official parser (@asyncapi/parser), the Avro and the
// Protobuf schema parsers registered so that payloads in those formats are checked too.
//
//   node validate.mjs <document.json>...
//
// Prints one JSON line per document: {"file", "valid", "errors": [...], "warnings": [...],
// "channels", "operations", "messages"} (ids as the parser read them); exits 1 when any document
// has an error (diagnostic severity 0), 2 when it cannot run.
import { readFile } from 'node:fs/promises';
import { Parser } from '@asyncapi/parser';
import { AvroSchemaParser } from '@asyncapi/avro-schema-parser';
import { ProtoBuffSchemaParser } from '@asyncapi/protobuf-schema-parser';

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node validate.mjs <document.json>...');
  process.exit(2);
}

const parser = new Parser();
parser.registerSchemaParser(AvroSchemaParser());
parser.registerSchemaParser(ProtoBuffSchemaParser());

let failed = false;
for (const file of files) {
  const text = await readFile(file, 'utf8');
  const { document, diagnostics } = await parser.parse(text);
  const describe = (d) => `${d.code}: ${d.message} at /${(d.path || []).join('/')}`;
  const errors = diagnostics.filter((d) => d.severity === 0).map(describe);
  const warnings = diagnostics.filter((d) => d.severity !== 0).map(describe);
  const valid = document !== undefined && errors.length === 0;
  failed ||= !valid;
  const ids = (collection) => (document ? collection.all().map((item) => item.id()) : []);
  console.log(JSON.stringify({
    file,
    valid,
    version: document ? document.version() : null,
    errors,
    warnings,
    channels: document ? ids(document.channels()) : [],
    operations: document ? ids(document.operations()) : [],
    messages: document ? ids(document.messages()) : [],
  }));
}
process.exit(failed ? 1 : 0);
