// Audit: marks the requests that get a line in the audit log (who did what, with which outcome). A route
// names its action (`audit: login`, `audit: { action: upload, methods: [POST] }`, or a list of those for
// several actions on one route), and the policy may
// audit every write method on every route (`audit: { write_methods: true }`, app 004). The line itself is
// written at the end of the request (src/observability/request-telemetry.ts), so denied attempts, upstream
// failures and successes are all recorded. This filter runs first on the route, before any filter that
// may deny.
import { array, boolean, dispatch, object, optional, string, withDefault, type Infer } from '../config/schema.ts';
import { defineFilter } from '../contract/filter.ts';

const ACTION = /^[A-Za-z0-9_.:/-]{1,64}$/;
const METHOD = /^[A-Z]+$/;
const WRITE_METHODS = ['POST', 'PUT', 'PATCH', 'DELETE'] as const;

const actionSchema = string({ pattern: ACTION, patternName: 'action name (letters, digits, _ . : / -)', description: 'Action recorded in the audit line, e.g. login, upload, admin-action.' });

const auditRuleSchema = object(
  {
    action: actionSchema,
    methods: optional(array(string({ pattern: METHOD, patternName: 'upper-case HTTP method' }), { single: true, description: 'Audit only these methods; all when absent.' })),
  },
  { description: 'An action name for some methods of the route.' },
);

const routeAuditSchema = dispatch<string | AuditRule | AuditRule[]>(
  'action name, { action, methods }, or a list of those',
  { description: 'Audit requests on this route: `audit: login`, `audit: { action: upload, methods: [POST] }`, or a list (`[{ action: upload, methods: [POST] }, { action: download, methods: [GET] }]`).' },
  (value) => (Array.isArray(value) ? array(auditRuleSchema, { minItems: 1 }) : value !== null && typeof value === 'object' ? auditRuleSchema : actionSchema),
);

const globalAuditSchema = object(
  {
    write_methods: withDefault(boolean({ description: 'Audit POST, PUT, PATCH and DELETE on every route (the route\'s own action, else `write_action`).' }), false),
    write_action: withDefault(string({ pattern: ACTION, patternName: 'action name', description: 'Action recorded for audited writes on routes without an action of their own.' }), 'write'),
  },
  { description: 'Audit log settings shared by all routes. The audit log destination is `log.audit`.' },
);

type AuditRule = Infer<typeof auditRuleSchema>;
export type RouteAuditConfig = Infer<typeof routeAuditSchema>;
export type GlobalAuditConfig = Infer<typeof globalAuditSchema>;

export const audit = defineFilter<GlobalAuditConfig, RouteAuditConfig, GlobalAuditConfig>({
  name: 'audit',
  reasons: [],
  stage: 'route',
  globalKey: 'audit',
  globalSchema: withDefault(globalAuditSchema, { write_methods: false, write_action: 'write' }),
  routeKey: 'audit',
  routeSchema: routeAuditSchema,
  setup: (config) => config ?? { write_methods: false, write_action: 'write' },
  compile({ config, shared, methods }) {
    const table: Record<string, string> = Object.create(null) as Record<string, string>;
    let all: string | null = null;
    const rules: AuditRule[] = config === undefined ? [] : typeof config === 'string' ? [{ action: config, methods: undefined }] : Array.isArray(config) ? config : [config];
    for (const rule of rules) {
      if (rule.methods === undefined) all ??= rule.action;
      else for (const m of rule.methods) table[m] ??= rule.action;
    }
    if (shared.write_methods) {
      for (const m of WRITE_METHODS) if (table[m] === undefined) table[m] = all ?? shared.write_action;
    }
    const routeMethods = methods.length ? methods : null;
    const relevant = Object.keys(table).filter((m) => routeMethods === null || routeMethods.includes(m));
    if (all === null && relevant.length === 0) return null;
    const describe = () => ({ ...(all !== null ? { action: all } : {}), ...(relevant.length ? { actions: Object.fromEntries(relevant.map((m) => [m, table[m]])) } : {}) });
    if (all !== null && relevant.length === 0) {
      const action = all;
      return {
        name: 'audit',
        onRequest(ctx) {
          ctx.audit = action;
          return undefined;
        },
        onResponse: null,
        describe,
      };
    }
    return {
      name: 'audit',
      onRequest(ctx) {
        const action = table[ctx.method] ?? all;
        if (action !== undefined && action !== null) ctx.audit = action;
        return undefined;
      },
      onResponse: null,
      describe,
    };
  },
});
