#!/usr/bin/env node
// npm's bin entry: the CLI is TypeScript run directly by Node 24 (type stripping); no build step.
import '../src/cli/main.ts';
