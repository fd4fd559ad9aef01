// A command timeout that a starved process does not mistake for a slow server.
//
// A timer fires in the event loop's timers phase, which comes before the poll phase that reads sockets. On a
// process that was busy or short of CPU past a command's deadline, the timer fires first even though the
// reply has been waiting in the socket all along: ioredis' own `commandTimeout` then fails a command Redis
// answered in time, and the limiter falls back to its failure mode under exactly the load it should hold
// (seen in the suite: a busy machine counted requests in the local fallback bucket). Here the timer only
// arms a check in the check phase (setImmediate), after one poll phase has read whatever arrived.
export class DeadlineError extends Error {
  constructor(ms: number) {
    super(`Command timed out after ${ms} ms`);
    this.name = 'DeadlineError';
  }
}

/** `work`'s outcome, or a DeadlineError once `ms` have passed and a poll phase since has not brought it. */
export function withDeadline<T>(work: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      setImmediate(() => {
        if (!settled) {
          settled = true;
          reject(new DeadlineError(ms));
        }
      });
    }, ms);
    work.then(
      (value) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
