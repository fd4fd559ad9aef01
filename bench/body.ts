// The body every upstream of the bench answers: nginx (`return 200`) and the raw node:http baseline send the
// same 100 bytes, so "passthrough vs raw node" compares the same answer.
export const UPSTREAM_BODY = ('ok from the upstream ' + '.'.repeat(100)).slice(0, 99) + '\n';
