// The one chain runner: hooks in order, stop at the first Deny, record which filter denied and why.
// Synchronous filters allocate no promise; the runner branches only when a hook returns one.
import type { RequestContext } from '../contract/context.ts';
import type { Deny, RequestHook, Verdict } from '../contract/filter.ts';

function isPromise(v: Verdict | Promise<Verdict>): v is Promise<Verdict> {
  return v !== undefined && typeof (v as Promise<Verdict>).then === 'function';
}

export function runChain(
  hooks: readonly RequestHook[],
  names: readonly string[],
  ctx: RequestContext,
  start = 0,
): Deny | undefined | Promise<Deny | undefined> {
  for (let i = start; i < hooks.length; i++) {
    const v = hooks[i]!(ctx);
    if (v === undefined) continue;
    if (isPromise(v)) {
      return v.then((resolved) => {
        if (resolved !== undefined) {
          ctx.deny = { filter: names[i]!, reason: resolved.reason };
          return resolved;
        }
        return runChain(hooks, names, ctx, i + 1);
      });
    }
    ctx.deny = { filter: names[i]!, reason: v.reason };
    return v;
  }
  return undefined;
}
