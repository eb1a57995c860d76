// The tiny test guest now lives in src/lab/guest.ts (the lab boots it in production code too);
// tests keep importing it from here.
export * from '../lab/guest.js';
