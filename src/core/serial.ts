/**
 * Runs async tasks one after another per key, in the order they were handed in; a task that fails does not
 * stop the next. Keys with nothing queued are forgotten, so memory follows what is in flight.
 */
export function createKeyedSerial(): <T>(key: string, task: () => Promise<T>) => Promise<T> {
  const tails = new Map<string, Promise<unknown>>();
  return <T>(key: string, task: () => Promise<T>): Promise<T> => {
    const prev = tails.get(key) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(task);
    tails.set(key, next);
    void next.finally(() => {
      if (tails.get(key) === next) tails.delete(key);
    }).catch(() => undefined);
    return next;
  };
}
