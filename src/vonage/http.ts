/**
 * The one axios instance shape every Vonage call uses. Built here, never injected: its limits are
 * the safety (a deadline, no redirects, a body cap, the body kept as text for our own parsers,
 * every status handed back to be classified, no absolute URL that could leave the base host).
 */
import axios, { type AxiosInstance } from 'axios';

export function createVonageHttp(baseURL: string, timeoutMs: number, maxBodyBytes: number): AxiosInstance {
  return axios.create({
    baseURL,
    timeout: timeoutMs,
    maxRedirects: 0,
    maxContentLength: maxBodyBytes,
    maxBodyLength: maxBodyBytes,
    responseType: 'text',
    transformResponse: [(data: unknown) => data],
    validateStatus: () => true,
    allowAbsoluteUrls: false,
  });
}
