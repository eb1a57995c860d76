// Branded ids: a VmId cannot be passed where a SiteId is expected, yet both stay plain strings at run time.
declare const brand: unique symbol;
export type Brand<T, B extends string> = T & { readonly [brand]: B };

export type SiteId = Brand<string, 'SiteId'>;
export type HostId = Brand<string, 'HostId'>;
export type VmId = Brand<string, 'VmId'>;
export type UserId = Brand<string, 'UserId'>;
export type LinkId = Brand<string, 'LinkId'>;

export const siteId = (s: string): SiteId => s as SiteId;
export const hostId = (s: string): HostId => s as HostId;
export const vmId = (s: string): VmId => s as VmId;
export const userId = (s: string): UserId => s as UserId;
export const linkId = (s: string): LinkId => s as LinkId;

/** The id of the undirected WAN link between two sites; the same whichever end is named first. */
export function linkIdOf(a: SiteId, b: SiteId): LinkId {
  return (a < b ? `${a}~${b}` : `${b}~${a}`) as LinkId;
}
