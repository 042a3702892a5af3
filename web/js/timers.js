// The timeouts an object has pending, so that closing it (or a state change) cancels them all at once.

export class TimerSet {
  constructor() {
    this.ids = new Set();
  }

  /** Call `fn` after `ms` unless cleared first. */
  later(ms, fn) {
    const id = setTimeout(() => {
      this.ids.delete(id);
      fn();
    }, ms);
    this.ids.add(id);
  }

  clear() {
    for (const id of this.ids) clearTimeout(id);
    this.ids.clear();
  }

  /** How many are pending. */
  get size() {
    return this.ids.size;
  }
}
