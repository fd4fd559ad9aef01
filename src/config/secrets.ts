// Every secret value resolved from the policy (`${file:...}`, secret-named `${env:...}`, URL passwords) is
// registered here so that logs, errors and `explain` output can mask it.

const MIN_MASKED_LENGTH = 4; // shorter values would mask ordinary words in every log line

export class SecretRegistry {
  readonly #values = new Set<string>();

  add(value: string): void {
    if (value.length >= MIN_MASKED_LENGTH) this.#values.add(value);
  }

  has(value: string): boolean {
    return this.#values.has(value);
  }

  get size(): number {
    return this.#values.size;
  }

  values(): IterableIterator<string> {
    return this.#values.values();
  }

  /** Replaces every registered secret inside `text` with `********`. */
  mask(text: string): string {
    let out = text;
    for (const v of this.#values) if (out.includes(v)) out = out.split(v).join('********');
    return out;
  }
}
