export * from './constants.ts'
export * from './errors.ts'
export * from './frames.ts'
export * from './methods.ts'
