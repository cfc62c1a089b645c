// `Promise.withResolvers` for Node 20, which lacks it (it arrived in Node 22). libp2p 2.x
// calls it through it-queue and mortice on its first peer-store write, and crashes there with
// "Promise.withResolvers is not a function"; no version pin avoids it (docs/STACK.md). They call it
// at run time, not at import, but every module that starts libp2p imports this one first so
// the order never depends on who imported what. Tests get it the same way, through those
// modules; no vitest setupFiles entry is needed.

interface Resolvers<T> {
  promise: Promise<T>;
  resolve: (value: T | PromiseLike<T>) => void;
  reject: (reason?: unknown) => void;
}

const promiseConstructor = Promise as unknown as { withResolvers?: <T>() => Resolvers<T> };

promiseConstructor.withResolvers ??= <T>(): Resolvers<T> => {
  let resolve!: Resolvers<T>['resolve'];
  let reject!: Resolvers<T>['reject'];
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
};
