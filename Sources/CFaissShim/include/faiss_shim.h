// A small C surface over Debian's static libfaiss.a, which ships the C++ library
// but not faiss's own C API. Conventions follow faiss/c_api: every function returns
// 0 on success and non-zero on failure, results come back through out-parameters,
// and the message of the last failure on this thread is read with
// c3po_faiss_last_error(). No C++ exception crosses this boundary.
#ifndef C3PO_FAISS_SHIM_H
#define C3PO_FAISS_SHIM_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Opaque handle to a faiss::Index. Owned by the caller; release with c3po_faiss_free.
typedef struct c3po_faiss_index c3po_faiss_index;

/// Metric of an index: inner product (cosine on unit vectors) or squared L2.
typedef enum { C3PO_FAISS_METRIC_INNER_PRODUCT = 0, C3PO_FAISS_METRIC_L2 = 1 } c3po_faiss_metric;

/// Creates an index of dimension `d` from a faiss factory string ("Flat", "IVF64,Flat", "HNSW32").
int c3po_faiss_create(int d, const char *factory, c3po_faiss_metric metric, c3po_faiss_index **out);
/// Whether the index needs no (more) training before `add`.
int c3po_faiss_is_trained(const c3po_faiss_index *index, int *out);
/// Trains on `n` row-major vectors `x` [n, d].
int c3po_faiss_train(c3po_faiss_index *index, int64_t n, const float *x);
/// Adds `n` row-major vectors `x` [n, d]; they receive ids ntotal ..< ntotal + n.
int c3po_faiss_add(c3po_faiss_index *index, int64_t n, const float *x);
/// k-nearest search of `n` queries `x` [n, d]; fills `distances` [n, k] and `labels` [n, k]
/// (label -1 where fewer than k results exist).
int c3po_faiss_search(const c3po_faiss_index *index, int64_t n, const float *x, int64_t k,
                      float *distances, int64_t *labels);
/// Sets a search-time parameter by name ("nprobe", "efSearch") as faiss::ParameterSpace does.
int c3po_faiss_set_parameter(c3po_faiss_index *index, const char *name, double value);
/// Writes the index to `path` with faiss::write_index.
int c3po_faiss_write(const c3po_faiss_index *index, const char *path);
/// Reads an index written by c3po_faiss_write.
int c3po_faiss_read(const char *path, c3po_faiss_index **out);
/// Number of vectors stored.
int64_t c3po_faiss_ntotal(const c3po_faiss_index *index);
/// Vector dimension.
int c3po_faiss_dimension(const c3po_faiss_index *index);
/// Releases the index; NULL is allowed.
void c3po_faiss_free(c3po_faiss_index *index);
/// Message of the last failure on the calling thread ("" if none). Valid until the next call.
const char *c3po_faiss_last_error(void);

#ifdef __cplusplus
}
#endif

#endif
