/** A URL with its user:password@ replaced by ***@: what logs, events and error messages may show. */
export function redactUrl(url: string): string {
  return url.replace(/\/\/[^/@]*@/, '//***@');
}

/** Whether a broker URL asks for TLS (mqtts://, wss://, ssl://). */
export function usesTls(url: string): boolean {
  return /^(mqtts|wss|ssl):/.test(url);
}
