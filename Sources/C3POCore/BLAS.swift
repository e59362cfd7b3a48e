import CBLAS
import Foundation

/// Matrix products through OpenBLAS. Everything is row-major.
public enum BLAS {
    /// C[M, N] = alpha · op(A) · op(B) + beta · C, with op(A) [M, K] and op(B) [K, N].
    @inline(__always)
    public static func sgemm(
        transA: Bool = false, transB: Bool = false,
        m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }

    /// A linear layer as stored by PyTorch: y[rows, out] = x[rows, in] · Wᵀ (+ bias), W [out, in].
    public static func linear(
        _ x: UnsafePointer<Float>, rows: Int, inFeatures: Int,
        weight: UnsafePointer<Float>, outFeatures: Int, bias: UnsafePointer<Float>? = nil,
        into y: UnsafeMutablePointer<Float>, accumulate: Bool = false
    ) {
        if let bias, !accumulate {
            for r in 0..<rows { (y + r * outFeatures).update(from: bias, count: outFeatures) }
        }
        sgemm(transB: true, m: rows, n: outFeatures, k: inFeatures,
              a: x, lda: inFeatures, b: weight, ldb: inFeatures,
              beta: (bias != nil || accumulate) ? 1 : 0, c: y, ldc: outFeatures)
    }

    /// OpenBLAS's own thread count (its pthread pool).
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }
    public static var threads: Int { Int(openblas_get_num_threads()) }
}
