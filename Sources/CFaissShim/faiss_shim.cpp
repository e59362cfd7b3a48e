// The exception boundary: each entry point catches everything, stores the message
// in a thread-local string and returns a status (as faiss/c_api/error_impl.cpp does).
#include "faiss_shim.h"

#include <faiss/AutoTune.h>
#include <faiss/Index.h>
#include <faiss/MetricType.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include <exception>
#include <string>

namespace {
thread_local std::string last_error;

template <typename F>
int guarded(F &&body) noexcept {
    try {
        body();
        last_error.clear();
        return 0;
    } catch (const std::exception &e) {
        last_error = e.what();
    } catch (...) {
        last_error = "unknown C++ exception in faiss";
    }
    return 1;
}

faiss::Index *unwrap(c3po_faiss_index *index) { return reinterpret_cast<faiss::Index *>(index); }
const faiss::Index *unwrap(const c3po_faiss_index *index) {
    return reinterpret_cast<const faiss::Index *>(index);
}
c3po_faiss_index *wrap(faiss::Index *index) { return reinterpret_cast<c3po_faiss_index *>(index); }

int null_argument(const char *what) {
    last_error = std::string("null argument: ") + what;
    return 1;
}
} // namespace

extern "C" {

int c3po_faiss_create(int d, const char *factory, c3po_faiss_metric metric, c3po_faiss_index **out) {
    if (!factory || !out) return null_argument("factory/out");
    return guarded([&] {
        faiss::MetricType m = metric == C3PO_FAISS_METRIC_L2 ? faiss::METRIC_L2 : faiss::METRIC_INNER_PRODUCT;
        *out = wrap(faiss::index_factory(d, factory, m));
    });
}

int c3po_faiss_is_trained(const c3po_faiss_index *index, int *out) {
    if (!index || !out) return null_argument("index/out");
    return guarded([&] { *out = unwrap(index)->is_trained ? 1 : 0; });
}

int c3po_faiss_train(c3po_faiss_index *index, int64_t n, const float *x) {
    if (!index || (!x && n > 0)) return null_argument("index/x");
    return guarded([&] { unwrap(index)->train(n, x); });
}

int c3po_faiss_add(c3po_faiss_index *index, int64_t n, const float *x) {
    if (!index || (!x && n > 0)) return null_argument("index/x");
    return guarded([&] { unwrap(index)->add(n, x); });
}

int c3po_faiss_search(const c3po_faiss_index *index, int64_t n, const float *x, int64_t k,
                      float *distances, int64_t *labels) {
    if (!index || !x || !distances || !labels) return null_argument("index/x/distances/labels");
    return guarded([&] {
        static_assert(sizeof(faiss::Index::idx_t) == sizeof(int64_t), "faiss ids are 64-bit");
        unwrap(index)->search(n, x, k, distances, reinterpret_cast<faiss::Index::idx_t *>(labels));
    });
}

int c3po_faiss_set_parameter(c3po_faiss_index *index, const char *name, double value) {
    if (!index || !name) return null_argument("index/name");
    return guarded([&] {
        faiss::ParameterSpace space;
        space.set_index_parameter(unwrap(index), name, value);
    });
}

int c3po_faiss_write(const c3po_faiss_index *index, const char *path) {
    if (!index || !path) return null_argument("index/path");
    return guarded([&] { faiss::write_index(unwrap(index), path); });
}

int c3po_faiss_read(const char *path, c3po_faiss_index **out) {
    if (!path || !out) return null_argument("path/out");
    return guarded([&] { *out = wrap(faiss::read_index(path)); });
}

int64_t c3po_faiss_ntotal(const c3po_faiss_index *index) { return index ? unwrap(index)->ntotal : 0; }

int c3po_faiss_dimension(const c3po_faiss_index *index) { return index ? unwrap(index)->d : 0; }

void c3po_faiss_free(c3po_faiss_index *index) { delete unwrap(index); }

const char *c3po_faiss_last_error(void) { return last_error.c_str(); }

} // extern "C"
