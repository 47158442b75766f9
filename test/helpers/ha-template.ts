/**
 * A small evaluator for the Home Assistant (Jinja2) templates edge-sensor emits, enough to apply
 * them to real messages in tests: `{{ expr }}` with paths (`value_json.a`, `value_json['a-b'].v`),
 * numbers, strings, None, `/`, `| round(n)`, `==`, `is defined`, `is not none`, `and`, `or` and
 * `x if cond else y`. Anything else throws, so a template we cannot check fails its test. Like
 * Jinja, a missing key is undefined (and rendering undefined is an error here, not an empty string).
 */
export function renderTemplate(template: string, value: string): unknown {
  const m = /^\{\{(.*)\}\}$/s.exec(template.trim());
  if (!m) throw new Error(`not a {{ }} template: ${template}`);
  let valueJson: unknown;
  try {
    valueJson = JSON.parse(value);
  } catch {
    valueJson = undefined;
  }
  const p = new Parser(tokenize(m[1]), { value, value_json: valueJson });
  const expr = p.ternary();
  p.end();
  const out = expr();
  if (out === UNDEFINED) throw new Error(`template renders undefined: ${template}`);
  return out;
}

const UNDEFINED = Symbol('undefined');
type Tok = { t: 'num'; v: number } | { t: 'str'; v: string } | { t: 'id'; v: string } | { t: 'op'; v: string };

function tokenize(src: string): Tok[] {
  const out: Tok[] = [];
  const re = /\s*(?:(\d+(?:\.\d+)?)|'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|([A-Za-z_]\w*)|(==|!=|[.[\]()|/]))/gy;
  let i = 0;
  while (i < src.length) {
    if (/^\s*$/.test(src.slice(i))) break;
    re.lastIndex = i;
    const m = re.exec(src);
    if (!m) throw new Error(`cannot read template at: ${src.slice(i)}`);
    i = re.lastIndex;
    if (m[1] !== undefined) out.push({ t: 'num', v: Number(m[1]) });
    else if (m[2] !== undefined || m[3] !== undefined) out.push({ t: 'str', v: (m[2] ?? m[3]).replace(/\\(.)/g, '$1') });
    else if (m[4] !== undefined) out.push({ t: 'id', v: m[4] });
    else out.push({ t: 'op', v: m[5] });
  }
  return out;
}

type Thunk = () => unknown;

/** Parses into thunks, evaluated afterwards: like Jinja, `x if c else y` evaluates only the branch taken. */
class Parser {
  private i = 0;
  constructor(
    private readonly toks: Tok[],
    private readonly vars: Record<string, unknown>,
  ) {}

  private peek(v?: string): boolean {
    const t = this.toks[this.i];
    return t !== undefined && (v === undefined || ((t.t === 'op' || t.t === 'id') && t.v === v));
  }

  private take(v: string): void {
    if (!this.peek(v)) throw new Error(`expected ${v} at token ${this.i}`);
    this.i++;
  }

  end(): void {
    if (this.i !== this.toks.length) throw new Error(`unexpected token ${JSON.stringify(this.toks[this.i])}`);
  }

  ternary(): Thunk {
    const a = this.or();
    if (!this.peek('if')) return a;
    this.take('if');
    const cond = this.or();
    this.take('else');
    const b = this.ternary();
    return () => (truthy(cond()) ? a() : b());
  }

  private or(): Thunk {
    let a = this.and();
    while (this.peek('or')) {
      this.take('or');
      const l = a;
      const r = this.and();
      a = () => {
        const x = l();
        return truthy(x) ? x : r();
      };
    }
    return a;
  }

  private and(): Thunk {
    let a = this.cmp();
    while (this.peek('and')) {
      this.take('and');
      const l = a;
      const r = this.cmp();
      a = () => {
        const x = l();
        return truthy(x) ? r() : x;
      };
    }
    return a;
  }

  private cmp(): Thunk {
    const a = this.arith();
    if (this.peek('==') || this.peek('!=')) {
      const neg = this.peek('!=');
      this.i++;
      const b = this.arith();
      return () => (neg ? a() !== b() : a() === b());
    }
    if (this.peek('is')) {
      this.take('is');
      let neg = false;
      if (this.peek('not')) {
        this.take('not');
        neg = true;
      }
      let test: (v: unknown) => boolean;
      if (this.peek('defined')) test = (v) => v !== UNDEFINED;
      else if (this.peek('none')) test = (v) => v === null;
      else throw new Error('unknown test');
      this.i++;
      return () => test(a()) !== neg;
    }
    return a;
  }

  private arith(): Thunk {
    let a = this.withFilters();
    while (this.peek('/')) {
      this.take('/');
      const l = a;
      const r = this.withFilters();
      a = () => {
        const x = l();
        const y = r();
        if (typeof x !== 'number' || typeof y !== 'number') throw new Error('division of non-numbers');
        return x / y;
      };
    }
    return a;
  }

  /** as in Jinja, a filter applies to the operand just before it: `a / b | round` rounds b */
  private withFilters(): Thunk {
    let a = this.primary();
    while (this.peek('|')) {
      this.take('|');
      const name = this.toks[this.i++];
      if (name?.t !== 'id' || name.v !== 'round') throw new Error(`unknown filter ${JSON.stringify(name)}`);
      this.take('(');
      const digits = this.toks[this.i++];
      if (digits?.t !== 'num') throw new Error('round expects a number of digits');
      this.take(')');
      const inner = a;
      a = () => {
        const x = inner();
        if (typeof x !== 'number') throw new Error('round of a non-number');
        return Math.round(x * 10 ** digits.v) / 10 ** digits.v;
      };
    }
    return a;
  }

  private primary(): Thunk {
    const t = this.toks[this.i++];
    if (!t) throw new Error('unexpected end of template');
    if (t.t === 'num' || t.t === 'str') return () => t.v;
    if (t.t === 'op' && t.v === '(') {
      const v = this.ternary();
      this.take(')');
      return v;
    }
    if (t.t !== 'id') throw new Error(`unexpected ${t.v}`);
    if (t.v === 'None' || t.v === 'none') return () => null;
    if (t.v === 'True' || t.v === 'true') return () => true;
    if (t.v === 'False' || t.v === 'false') return () => false;
    const keys: string[] = [];
    for (;;) {
      if (this.peek('.')) {
        this.take('.');
        const k = this.toks[this.i++];
        if (k?.t !== 'id') throw new Error('expected a name after .');
        keys.push(k.v);
      } else if (this.peek('[')) {
        this.take('[');
        const k = this.toks[this.i++];
        if (k?.t !== 'str') throw new Error('expected a string key');
        this.take(']');
        keys.push(k.v);
      } else break;
    }
    return () => keys.reduce<unknown>((v, k) => member(v, k), Object.hasOwn(this.vars, t.v) ? this.vars[t.v] : UNDEFINED);
  }
}

function member(v: unknown, k: string): unknown {
  if (v === UNDEFINED || v === null || typeof v !== 'object') return UNDEFINED;
  return Object.hasOwn(v, k) ? (v as Record<string, unknown>)[k] : UNDEFINED;
}

function truthy(v: unknown): boolean {
  return v !== UNDEFINED && v !== null && v !== false && v !== 0 && v !== '';
}
