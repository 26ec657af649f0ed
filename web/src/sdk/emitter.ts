// A small typed event emitter: what the session tells the app.

type Listener<T> = (value: T) => void;

export class Emitter<Events extends object> {
  private listeners = new Map<keyof Events, Set<Listener<never>>>();

  /** Calls `listener` with every `type` event until the returned function is called. */
  on<K extends keyof Events>(type: K, listener: Listener<Events[K]>): () => void {
    let set = this.listeners.get(type);
    if (!set) {
      set = new Set();
      this.listeners.set(type, set);
    }
    set.add(listener as Listener<never>);
    return () => set.delete(listener as Listener<never>);
  }

  /** Resolves with the first `type` event that `matches`, or rejects after `ms`. */
  next<K extends keyof Events>(type: K, matches: (v: Events[K]) => boolean, ms: number): Promise<Events[K]> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`no ${String(type)} within ${ms} ms`));
      }, ms);
      const off = this.on(type, (v) => {
        if (matches(v)) {
          clearTimeout(timer);
          off();
          resolve(v);
        }
      });
    });
  }

  protected emit<K extends keyof Events>(type: K, value: Events[K]): void {
    for (const listener of this.listeners.get(type) ?? []) {
      try {
        (listener as Listener<Events[K]>)(value);
      } catch (e) {
        console.error(`a ${String(type)} listener threw`, e);
      }
    }
  }
}
