// The README's first command: `npm start` runs the default policy in front of the bundled demo upstream.
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { expect, it } from 'vitest';
import { ROOT } from '../helpers/gateway.ts';

it('npm start serves the default policy in front of the demo upstream', async () => {
  const proc = spawn('npm', ['start'], { cwd: ROOT, env: { ...process.env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  proc.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`npm start did not come up:\n${out}`)), 20_000);
      proc.stdout!.on('data', () => {
        if (out.includes('portcullis policy ')) {
          clearTimeout(t);
          resolve();
        }
      });
    });
    expect(out).toContain('portcullis listening on http://127.0.0.1:8080');
    expect(out).toContain('portcullis demo upstream on http://127.0.0.1:3000');
    const body = await new Promise<string>((resolve, reject) => {
      request('http://127.0.0.1:8080/hello', (res) => {
        let b = '';
        res.setEncoding('utf8').on('data', (d: string) => (b += d)).on('end', () => resolve(b));
      })
        .on('error', reject)
        .end();
    });
    expect(JSON.parse(body)).toMatchObject({ service: 'portcullis demo upstream', url: '/hello' });
  } finally {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      try {
        process.kill(-proc.pid!, 'SIGTERM'); // the process group: npm and the gateway it started
      } catch {
        /* already gone */
      }
      await exited;
    }
  }
});
