// The producer of KafkaJS's "Getting started" page (kafka.js.org/docs/getting-started)
// on its default settings (acks -1, 5 retries from 300 ms), sending one message
// at a time until its stdin closes, so that a test can kill brokers under it:
//
//   node failover-producer.js <brokers> <topic> [pause-ms]
//
// stdout carries one JSON line per send: {"acked": value, "partition", "offset"}
// once acknowledged, {"error": message, "name", "value"} when KafkaJS gave up on
// it; {"done": sent} after disconnecting. KafkaJS's own log goes to stderr.
const { Kafka, logLevel } = require('kafkajs')

const [argBrokers, topic, argPause] = process.argv.slice(2)
const pauseMs = Number(argPause || 5)

const toStderr = () => ({ namespace, level, log }) => {
  const { message, ...extra } = log
  process.stderr.write(`[${namespace}] ${level} ${message} ${JSON.stringify(extra)}\n`)
}

const kafka = new Kafka({
  clientId: 'my-app',
  brokers: argBrokers.split(','),
  logLevel: logLevel.INFO,
  logCreator: toStderr,
})
const producer = kafka.producer()

let stopping = false
process.stdin.on('end', () => { stopping = true })
process.stdin.resume()

const emit = (line) => process.stdout.write(JSON.stringify(line) + '\n')

const run = async () => {
  await producer.connect()
  let sent = 0
  while (!stopping) {
    const value = `v${sent}`
    try {
      const [meta] = await producer.send({ topic, messages: [{ value }] })
      emit({ acked: value, partition: meta.partition, offset: Number(meta.baseOffset) })
    } catch (e) {
      emit({ error: e.message, name: e.name, value })
    }
    sent++
    await new Promise((resolve) => setTimeout(resolve, pauseMs))
  }
  await producer.disconnect()
  emit({ done: sent })
}

run().catch((e) => {
  emit({ fatal: e.message, name: e.name })
  process.exit(1)
})
