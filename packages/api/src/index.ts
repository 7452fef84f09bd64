export * from './wire.ts'
export * from './methods.ts'
export * from './schema.ts'
export * from './config.ts'
