import CBLAS
import CKernels
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Which OpenBLAS core the tools run on, and the correction when the library chose a generic one.
///
/// Debian's OpenBLAS (0.3.21) is built with DYNAMIC_ARCH: at load time it picks a kernel set for
/// the CPU it detects, and on CPUs newer than the release (Sapphire/Emerald Rapids, for one) it
/// falls back to "Prescott", generic SSE3 kernels 3-5x slower than its own SkylakeX ones. The
/// choice is made in the library's constructor, before `main`, and is read from the environment
/// variable `OPENBLAS_CORETYPE` only then. So the tools, first thing in `main`, compare the core
/// with what cpuid reports and, when a generic core sits on a CPU with AVX2 or AVX-512, run
/// themselves again (`execv` of /proc/self/exe, same arguments) with `OPENBLAS_CORETYPE` set;
/// the second start checks one product against a naive one and reports the result.
///
/// A user's own `OPENBLAS_CORETYPE` always wins; `C3PO_BLAS_AUTOCORE=0` turns the correction off.
/// Our own kernels (`MatMul`) do not depend on this: the MoE engine and the embedder call no BLAS;
/// what still does is FAISS and the similarity products of the index tools.
public enum BLASCore {
    /// What cpuid (and the OS) offer, as far as choosing a BLAS core goes.
    public struct CPU: Equatable, Sendable {
        public var avx2: Bool
        public var avx512: Bool
        public init(avx2: Bool, avx512: Bool) { self.avx2 = avx2; self.avx512 = avx512 }

        public static var current: CPU {
            let f = c3po_cpu_features()
            return CPU(avx2: f & C3PO_CPU_AVX2.rawValue != 0, avx512: f & C3PO_CPU_AVX512.rawValue != 0)
        }
    }

    public enum Decision: Equatable, Sendable {
        case keep(String)     // why the core stays
        case rerun(coreType: String)
    }

    /// Cores that use the AVX-512 (and, below, AVX2) instructions; names as
    /// `openblas_get_corename` spells them, compared in lower case.
    static let avx512Cores: Set<String> = ["skylakex", "cooperlake", "sapphirerapids"]
    static let avx2Cores: Set<String> = avx512Cores.union(["haswell", "zen", "skylake"])

    /// The environment variable that marks the second start; its value is the core the library
    /// chose on the first.
    public static let rerunMarker = "C3PO_BLAS_RERUN_FROM"

    /// The pure choice, for a given library core, CPU and environment.
    public static func decide(coreName: String, cpu: CPU, environment env: [String: String]) -> Decision {
        if let user = env["OPENBLAS_CORETYPE"], env[rerunMarker] == nil { return .keep("OPENBLAS_CORETYPE=\(user) set by the user") }
        if env["C3PO_BLAS_AUTOCORE"] == "0" { return .keep("C3PO_BLAS_AUTOCORE=0") }
        if env[rerunMarker] != nil { return .keep("already corrected") }
        let core = coreName.lowercased()
        if cpu.avx512 && !avx512Cores.contains(core) { return .rerun(coreType: "SkylakeX") }
        if cpu.avx2 && !avx2Cores.contains(core) { return .rerun(coreType: "Haswell") }
        return .keep("the library's own choice suits this CPU")
    }

    public static var coreName: String { String(cString: openblas_get_corename()) }
    public static var libraryConfig: String { String(cString: openblas_get_config()).trimmingCharacters(in: .whitespaces) }

    /// Called first thing by the tools: may replace the process (execv) and so never return.
    public static func correctAtStart() {
        let env = ProcessInfo.processInfo.environment
        switch decide(coreName: coreName, cpu: .current, environment: env) {
        case .keep:
            if let from = env[rerunMarker], !productIsRight() {
                StandardError.warning("OpenBLAS core \(coreName) (set by the toolkit, replacing \(from)) computed a wrong product; running again with the library's own choice")
                unsetenv("OPENBLAS_CORETYPE"); unsetenv(rerunMarker)
                setenv("C3PO_BLAS_AUTOCORE", "0", 1)
                rerun()
            }
        case let .rerun(coreType):
            setenv(rerunMarker, coreName, 1)
            setenv("OPENBLAS_CORETYPE", coreType, 1)
            rerun()
        }
    }

    private static func rerun() {
        var argv: [UnsafeMutablePointer<CChar>?] = CommandLine.arguments.map { strdup($0) }
        argv.append(nil)
        execv("/proc/self/exe", argv)
        // execv returned: the process goes on with the library's first choice.
        StandardError.warning("could not run again with a better OpenBLAS core (execv: \(String(cString: strerror(errno)))); going on with \(coreName)")
    }

    /// A 37 × 29 × 41 product through sgemm against a naive double-precision one.
    public static func productIsRight() -> Bool {
        let (m, n, k) = (37, 29, 41)
        let a = (0..<(m * k)).map { Float(($0 * 7919) % 97) / 97 - 0.5 }, b = (0..<(k * n)).map { Float(($0 * 104729) % 89) / 89 - 0.5 }
        var c = [Float](repeating: 0, count: m * n)
        a.withUnsafeBufferPointer { ap in b.withUnsafeBufferPointer { bp in c.withUnsafeMutableBufferPointer { cp in
            BLAS.sgemm(m: m, n: n, k: k, a: ap.baseAddress!, lda: k, b: bp.baseAddress!, ldb: n, c: cp.baseAddress!, ldc: n)
        } } }
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k { s += Double(a[i * k + p]) * Double(b[p * n + j]) }
                if abs(Double(c[i * n + j]) - s) > 1e-4 { return false }
            }
        }
        return true
    }

    /// One line on what the products run on: our kernels' path and the BLAS core.
    public static var summary: String {
        let env = ProcessInfo.processInfo.environment
        var core = "OpenBLAS core \(coreName)"
        if let from = env[rerunMarker] { core += " (set by the toolkit; the library chose \(from) for this CPU)" }
        else if let user = env["OPENBLAS_CORETYPE"] { core += " (OPENBLAS_CORETYPE=\(user))" }
        return "kernels \(KernelPath.active) (CPU offers: \(KernelPath.allCases.filter(\.isSupported).map(\.name).joined(separator: ", "))); \(core), \(libraryConfig)"
    }
}
