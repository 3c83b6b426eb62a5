// A KafkaJS 2.2.4 transactional producer driven line by line from stdin,
// for tests/txn/test_transaction_clients.py. Each line is a JSON command
// ({"op": "begin"} | {"op": "send", "value"} | {"op": "offsets", "group",
// "partition", "offset"} | {"op": "commit"} | {"op": "abort"}); each is
// answered with one line, "ok" or "error <name>: <message>".
// Environment: BROKERS, TOPIC (where values go), INPUT (the topic whose
// offsets are sent), TXN_ID.
const readline = require('readline')
const { Kafka, logLevel } = require('kafkajs')

const kafka = new Kafka({
  clientId: 'pybroker-txn-driver',
  brokers: process.env.BROKERS.split(','),
  logLevel: logLevel.NOTHING,
})
const producer = kafka.producer({
  transactionalId: process.env.TXN_ID,
  maxInFlightRequests: 1,
  idempotent: true,
})
let txn = null

async function run(cmd) {
  switch (cmd.op) {
    case 'begin':
      txn = await producer.transaction()
      return
    case 'send':
      await txn.send({ topic: process.env.TOPIC, messages: [{ value: cmd.value }] })
      return
    case 'offsets':
      await txn.sendOffsets({
        consumerGroupId: cmd.group,
        topics: [{ topic: process.env.INPUT, partitions: [{ partition: cmd.partition, offset: String(cmd.offset) }] }],
      })
      return
    case 'commit':
      await txn.commit()
      return
    case 'abort':
      await txn.abort()
      return
    default:
      throw new Error(`unknown op ${cmd.op}`)
  }
}

async function main() {
  await producer.connect()
  process.stdout.write('ok\n')
  const lines = readline.createInterface({ input: process.stdin })
  for await (const line of lines) {
    try {
      await run(JSON.parse(line))
      process.stdout.write('ok\n')
    } catch (e) {
      process.stdout.write(`error ${e.type || e.name}: ${e.message}\n`)
    }
  }
  await producer.disconnect()
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
