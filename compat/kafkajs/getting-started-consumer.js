// The consumer of KafkaJS's "Getting started" page (kafka.js.org/docs/getting-started),
// made runnable against any broker:
//
//   BROKERS=127.0.0.1:9092 TOPIC=test-topic GROUP=test-group EXPECTED=10 node getting-started-consumer.js
//   node getting-started-consumer.js <brokers> <topic> <group> <expected> [timeout-ms]
//
// Each message is printed to stdout as one JSON line
// {"topic", "partition", "offset", "key", "value"} (key and value as UTF-8, null
// when absent). Once EXPECTED messages have been seen the consumer disconnects
// (committing its offsets, as KafkaJS does on disconnect) and the process exits
// 0. If they do not all arrive within TIMEOUT_MS (default 60000), or the
// consumer crashes, it exits non-zero. KafkaJS's own log goes to stderr so that
// stdout carries only messages.
const { Kafka, logLevel } = require('kafkajs')

const [argBrokers, argTopic, argGroup, argExpected, argTimeout] = process.argv.slice(2)
const brokers = (argBrokers || process.env.BROKERS || 'localhost:9092').split(',')
const topic = argTopic || process.env.TOPIC || 'test-topic'
const groupId = argGroup || process.env.GROUP || 'test-group'
const expected = Number(argExpected || process.env.EXPECTED || 1)
const timeoutMs = Number(argTimeout || process.env.TIMEOUT_MS || 60000)

const toStderr = () => ({ namespace, level, log }) => {
  const { message, ...extra } = log
  process.stderr.write(`[${namespace}] ${level} ${message} ${JSON.stringify(extra)}\n`)
}

const kafka = new Kafka({
  clientId: 'my-app',
  brokers,
  logLevel: logLevel.INFO,
  logCreator: toStderr,
})

const consumer = kafka.consumer({ groupId })

let seen = 0
let finishing = false

async function finish (code, why) {
  if (finishing) return
  finishing = true
  if (why) process.stderr.write(`getting-started-consumer: ${why}\n`)
  try {
    await consumer.disconnect()
  } catch (err) {
    process.stderr.write(`getting-started-consumer: disconnect failed: ${err}\n`)
    code = code || 3
  }
  process.exit(code)
}

const timer = setTimeout(
  () => finish(2, `timed out after ${timeoutMs} ms with ${seen} of ${expected} messages`),
  timeoutMs
)

consumer.on(consumer.events.CRASH, ({ payload }) => {
  clearTimeout(timer)
  finish(4, `consumer crashed: ${payload.error}`)
})

const run = async () => {
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })

  await consumer.run({
    eachMessage: async ({ topic, partition, message }) => {
      process.stdout.write(JSON.stringify({
        topic,
        partition,
        offset: message.offset,
        key: message.key === null ? null : message.key.toString(),
        value: message.value === null ? null : message.value.toString(),
      }) + '\n')
      seen += 1
      if (seen === expected) {
        clearTimeout(timer)
        // Not awaited: disconnect waits for this very eachMessage to return.
        finish(0)
      }
    },
  })
}

run().catch(err => {
  clearTimeout(timer)
  finish(1, `failed: ${err && err.stack ? err.stack : err}`)
})
