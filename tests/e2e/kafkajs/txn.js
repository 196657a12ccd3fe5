// kafkajs transactions for test_transactions.py: `node txn.js '<json spec>'`.
// spec: {brokers, topic, transactionalId, transactions: [{values, commit}], consume?: {groupId,
// until}}. Runs the transactions in order with one transactional producer (each value to
// partition 0), then, with `consume`, reads the topic from the beginning with a
// read_committed group consumer until the value `until`. Prints one JSON line:
// {"consumed": [[offset, value], ...]}; exits non-zero on any error.
'use strict'
const { Kafka, logLevel } = require('kafkajs')

async function main () {
  const spec = JSON.parse(process.argv[2])
  const kafka = new Kafka({
    clientId: 'icestream-e2e',
    brokers: spec.brokers,
    logLevel: logLevel.ERROR,
    retry: { initialRetryTime: 100, retries: 8 }
  })
  const producer = kafka.producer({
    transactionalId: spec.transactionalId,
    idempotent: true,
    maxInFlightRequests: 1,
    transactionTimeout: 30000
  })
  await producer.connect()
  for (const t of spec.transactions) {
    const txn = await producer.transaction()
    await txn.send({
      topic: spec.topic,
      acks: -1,
      messages: t.values.map(v => ({ value: v, partition: 0 }))
    })
    if (t.commit) await txn.commit()
    else await txn.abort()
  }
  await producer.disconnect()

  const consumed = []
  if (spec.consume) {
    const consumer = kafka.consumer({
      groupId: spec.consume.groupId,
      readUncommitted: false,
      maxWaitTimeInMs: 100
    })
    await consumer.connect()
    await consumer.subscribe({ topic: spec.topic, fromBeginning: true })
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(
        `no ${spec.consume.until} after 60 s; consumed ${JSON.stringify(consumed)}`)), 60000)
      consumer.run({
        autoCommit: false,
        eachMessage: async ({ message }) => {
          const value = message.value.toString()
          consumed.push([Number(message.offset), value])
          if (value === spec.consume.until) {
            clearTimeout(timer)
            resolve()
          }
        }
      }).catch(reject)
    })
    await consumer.disconnect()
  }
  process.stdout.write(JSON.stringify({ consumed }) + '\n')
}

main().then(() => process.exit(0), err => {
  process.stderr.write(`kafkajs: ${err && err.stack ? err.stack : err}\n`)
  process.exit(1)
})
