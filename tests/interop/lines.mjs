// JSON lines between a relying-party script and the Python test that plays the citizen's browser.
import * as readline from 'node:readline'

const input = readline.createInterface({ input: process.stdin })
const waiting = []
const queued = []
input.on('line', (line) => {
  const value = JSON.parse(line)
  if (waiting.length) waiting.shift()(value)
  else queued.push(value)
})

export function say (value) {
  process.stdout.write(JSON.stringify(value) + '\n')
}

export function hear () {
  if (queued.length) return Promise.resolve(queued.shift())
  return new Promise((resolve) => waiting.push(resolve))
}

export async function run (main) {
  try {
    await main()
    process.exit(0)
  } catch (error) {
    say({ step: 'error', name: error.name, message: error.message, code: error.code, cause: String(error.cause || '') })
    process.exit(1)
  }
}
