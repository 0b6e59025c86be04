import type { BlobCatalog } from './port.js';

/**
 * The BlobCatalog half of a MetaStore, answered by a catalog object of the
 * same store (src/metastore/{sqlite,postgres}-catalog.ts), which keeps the
 * cleaner's, fsck's and stats' queries out of the request path's file.
 */
export abstract class CatalogForwarder implements BlobCatalog {
  protected abstract readonly catalog: BlobCatalog;

  listUnreferenced: BlobCatalog['listUnreferenced'] = (q) => this.catalog.listUnreferenced(q);
  deleteUnreferenced: BlobCatalog['deleteUnreferenced'] = (h, b) =>
    this.catalog.deleteUnreferenced(h, b);
  existingBlobs: BlobCatalog['existingBlobs'] = (h) => this.catalog.existingBlobs(h);
  listBlobs: BlobCatalog['listBlobs'] = (p) => this.catalog.listBlobs(p);
  countPaths: BlobCatalog['countPaths'] = (h) => this.catalog.countPaths(h);
  referenceCount: BlobCatalog['referenceCount'] = (h) => this.catalog.referenceCount(h);
  recount: BlobCatalog['recount'] = (h, n) => this.catalog.recount(h, n);
  pathsOf: BlobCatalog['pathsOf'] = (h, l) => this.catalog.pathsOf(h, l);
  markDamage: BlobCatalog['markDamage'] = (h, d) => this.catalog.markDamage(h, d);
  markRestored: BlobCatalog['markRestored'] = (h, s) => this.catalog.markRestored(h, s);
  dropBlob: BlobCatalog['dropBlob'] = (h) => this.catalog.dropBlob(h);
  totals: BlobCatalog['totals'] = () => this.catalog.totals();
  keptTotals: BlobCatalog['keptTotals'] = () => this.catalog.keptTotals();
  totalsBothWays: BlobCatalog['totalsBothWays'] = () => this.catalog.totalsBothWays();
  resetKeptTotals: BlobCatalog['resetKeptTotals'] = () => this.catalog.resetKeptTotals();
}
