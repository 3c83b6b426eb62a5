// One message produced and consumed back in a new group over TLS and
// SASL/PLAIN (security.protocol SASL_SSL), as KafkaJS's docs configure it:
//
//   BROKERS=127.0.0.1:9093 TOPIC=t CA_FILE=ca.pem SASL_USER=bob SASL_PASSWORD=secret node secured-roundtrip.js
//
// With OAUTH_TOKEN instead of the user and password, SASL/OAUTHBEARER with
// that token; without CA_FILE, no TLS.
//
// Prints the value read back on stdout and exits 0; exits non-zero on an
// error or after TIMEOUT_MS (default 30000).
const fs = require('fs')
const { Kafka, logLevel } = require('kafkajs')

const brokers = process.env.BROKERS.split(',')
const topic = process.env.TOPIC
const timeoutMs = Number(process.env.TIMEOUT_MS || 30000)

const token = process.env.OAUTH_TOKEN
const kafka = new Kafka({
  clientId: 'secured-roundtrip',
  brokers,
  ssl: process.env.CA_FILE ? { ca: [fs.readFileSync(process.env.CA_FILE, 'utf-8')] } : false,
  sasl: token
    ? { mechanism: 'oauthbearer', oauthBearerProvider: async () => ({ value: token }) }
    : { mechanism: 'plain', username: process.env.SASL_USER, password: process.env.SASL_PASSWORD },
  logLevel: logLevel.WARN,
})
const text = process.env.TEXT || 'kafkajs over SASL_SSL'

async function main () {
  const timer = setTimeout(() => { console.error('timed out'); process.exit(2) }, timeoutMs)
  const producer = kafka.producer()
  await producer.connect()
  await producer.send({ topic, messages: [{ value: text }] })
  await producer.disconnect()
  const consumer = kafka.consumer({ groupId: `g-${topic}` })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  await new Promise((resolve) => {
    consumer.run({
      eachMessage: async ({ message }) => {
        process.stdout.write(message.value.toString() + '\n')
        resolve()
      },
    })
  })
  await consumer.disconnect()
  clearTimeout(timer)
}

main().catch((err) => { console.error(err); process.exit(1) })
