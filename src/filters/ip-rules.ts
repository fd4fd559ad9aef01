// Per-route IP allow and deny lists. The address judged is `ctx.clientIp`: the peer itself, or (only when
// the peer is in `trusted_proxies`) the right-most untrusted hop of its X-Forwarded-For, so a client
// cannot pick its own address. IPv4 and IPv4-mapped IPv6 are one address (cidr.ts). Deny wins over allow.
import { isIP } from 'node:net';
import { array, cidr, object, oneOf, optional, withDefault, type Infer } from '../config/schema.ts';
import { CidrSet } from '../config/cidr.ts';
import { reportDeny, type RequestContext } from '../contract/context.ts';
import { defineFilter, deny } from '../contract/filter.ts';

const ipRulesSchema = object(
  {
    allow: optional(array(cidr(), { single: true, description: 'Only clients in these ranges may use the route (any client when absent).' })),
    deny: optional(array(cidr(), { single: true, description: 'Clients in these ranges are refused, even when also allowed.' })),
    mode: withDefault(oneOf(['enforce', 'report'] as const, { description: 'report: a client the lists would refuse is let through, counted (portcullis_reported_denies_total) and logged (`reported` in the access line); for rolling a list out.' }), 'enforce'),
  },
  {
    description: 'IP allow/deny lists of this route (CIDRs, IPv4 and IPv6), judged on the client IP as computed from trusted_proxies. 403 ip_not_allowed.',
    check(v, path, issues) {
      if (v.allow === undefined && v.deny === undefined) issues.push({ path, message: 'give "allow", "deny" or both' });
    },
  },
);

export type IpRulesConfig = Infer<typeof ipRulesSchema>;

export const ipRules = defineFilter<undefined, IpRulesConfig, undefined>({
  name: 'ip_rules',
  reasons: ['ip_not_allowed'],
  stage: 'route',
  routeKey: 'ip_rules',
  routeSchema: ipRulesSchema,
  compile({ config }) {
    if (!config) return null;
    const allow = config.allow ? new CidrSet(config.allow) : null;
    const denied = config.deny && config.deny.length ? new CidrSet(config.deny) : null;
    const refusal = deny(403, 'ip_not_allowed');
    const check = (ctx: RequestContext) => {
      const ip = ctx.clientIp;
      if (denied !== null) {
        if (denied.has(ip)) return refusal;
        // Fail closed: an address that does not parse (a proxy that appends "ip:port", say) could
        // never match a deny rule, so it is refused rather than let through.
        if (allow === null && isIP(ip) === 0) return refusal;
      }
      // An empty allow list allows nobody; an address that does not parse is never allowed.
      if (allow !== null && !allow.has(ip)) return refusal;
      return undefined;
    };
    const report = (ctx: RequestContext): undefined => {
      if (check(ctx) !== undefined) reportDeny(ctx, 'ip_rules', 'ip_not_allowed');
      return undefined;
    };
    return {
      name: 'ip_rules',
      onRequest: config.mode === 'report' ? report : check,
      onResponse: null,
      describe: () => ({ allow: config.allow?.map((c) => c.text) ?? null, deny: config.deny?.map((c) => c.text) ?? [], mode: config.mode }),
    };
  },
});
