// kafkajs over SASL for test_security_sasl.py: `node sasl.js '<json spec>'`.
// spec: {brokers, ssl?: {ca}, sasl: {mechanism, username, password}, produce?: {topic, values},
// consume?: {topic, count}}. Produces the values to partition 0, then reads `count` records
// of partition 0 from the beginning. Prints one JSON line: {"consumed": [values]} or, when
// anything fails, {"error": "<message>"} (exit code 2).
'use strict'
const fs = require('fs')
const { Kafka, logLevel } = require('kafkajs')

async function main () {
  const spec = JSON.parse(process.argv[2])
  const kafka = new Kafka({
    clientId: 'icestream-e2e-sasl',
    brokers: spec.brokers,
    ssl: spec.ssl ? { ca: [fs.readFileSync(spec.ssl.ca, 'utf-8')] } : false,
    sasl: spec.sasl,
    logLevel: logLevel.NOTHING,
    retry: { initialRetryTime: 100, retries: 2 }
  })
  const out = {}
  if (spec.produce) {
    const producer = kafka.producer()
    await producer.connect()
    await producer.send({
      topic: spec.produce.topic,
      acks: -1,
      messages: spec.produce.values.map(v => ({ value: v, partition: 0 }))
    })
    await producer.disconnect()
  }
  if (spec.consume) {
    const consumer = kafka.consumer({ groupId: 'js-' + Date.now() })
    await consumer.connect()
    await consumer.subscribe({ topic: spec.consume.topic, fromBeginning: true })
    const consumed = []
    await new Promise((resolve, reject) => {
      consumer.run({
        eachMessage: async ({ message }) => {
          consumed.push(message.value.toString())
          if (consumed.length >= spec.consume.count) resolve()
        }
      }).catch(reject)
    })
    await consumer.disconnect()
    out.consumed = consumed
  }
  console.log(JSON.stringify(out))
}

main().then(() => process.exit(0), e => {
  console.log(JSON.stringify({ error: `${e.name}: ${e.message}` }))
  process.exit(2)
})
