import C3POCore
import C3POModel
import Foundation
import XCTest

/// The Swift side of Scripts/bench-moe. Skipped unless C3PO_BENCH_MOE_DIR names a checkpoint;
/// prints one `BENCH {json}` line per measurement (medians of C3PO_BENCH_REPEATS warm runs).
final class MoEBenchmarkTests: XCTestCase {
    func testPrefillAndTailTimings() throws {
        let env = ProcessInfo.processInfo.environment
        guard let dir = env["C3PO_BENCH_MOE_DIR"] else { throw XCTSkip("set C3PO_BENCH_MOE_DIR to run the MoE benchmark") }
        let lengths = (env["C3PO_BENCH_LENGTHS"] ?? "64,128,512").split(separator: ",").compactMap { Int($0) }
        let repeats = Int(env["C3PO_BENCH_REPEATS"] ?? "3") ?? 3
        let tailLayers = Int(env["C3PO_BENCH_TAIL_LAYERS"] ?? "5") ?? 5
        // Gradient evaluations timed (at least 5; more for a profiler's sample).
        let gradientRepeats = max(5, repeats, Int(env["C3PO_BENCH_GRADIENT_REPEATS"] ?? "") ?? 0)
        let model = try ModelLoader.load(directory: URL(fileURLWithPath: dir))
        func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }
        func emit(_ obj: [String: Any]) throws {
            print("BENCH " + String(decoding: try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]), as: UTF8.self))
        }
        try emit(["what": "runtime", "summary": BLASCore.summary, "kernels": KernelPath.active.name, "blas_core": BLASCore.coreName])
        var rng = SystemRandomNumberGenerator()
        for n in lengths {
            let tokens = (0..<n).map { _ in Int.random(in: 0..<min(50000, model.vocabularySize), using: &rng) }
            _ = try model.prefill(tokens, override: nil) // warm-up
            var times: [Double] = []
            var state: PrefillState?
            let profile = StageProfile.shared
            profile.reset()
            let faults0 = pageFaults()
            for _ in 0..<repeats {
                let t0 = Date()
                state = try model.prefill(tokens, override: nil)
                times.append(Date().timeIntervalSince(t0))
            }
            let full = median(times)
            let faults1 = pageFaults()
            try emit(["what": "prefill", "tokens": n, "seconds": full, "tokens_per_s": Double(n) / full, "rss_peak_kb": peakRSS(),
                      "minor_faults_per_pass": (faults1.minor - faults0.minor) / repeats, "major_faults_per_pass": (faults1.major - faults0.major) / repeats])
            if profile.enabled {
                // [stage, wall s, CPU s] per pass, averaged over the timed runs (C3PO_PROFILE=1).
                let stages = profile.snapshot(), r = Double(repeats)
                let top = stages.filter { !$0.stage.contains(".") }
                try emit(["what": "profile", "tokens": n, "stages": stages.map { [$0.stage, $0.seconds / r, $0.cpuSeconds / r] as [Any] },
                          "timed_wall": top.reduce(0) { $0 + $1.seconds } / r, "timed_cpu": top.reduce(0) { $0 + $1.cpuSeconds } / r])
            }
            guard let state else { continue }
            let from = max(0, model.layerCount - tailLayers)
            var weights = [Float](repeating: 0, count: model.expertCount)
            for e in 0..<min(20, model.expertCount) { weights[e] = Float(e + 1) }
            let o = RoutingOverride(layers: Dictionary(uniqueKeysWithValues: (from..<model.layerCount).map { ($0, weights) }))
            _ = try model.reevaluateTail(state, fromLayer: from, override: o, rows: nil)
            var tail: [Double] = []
            for _ in 0..<max(5, repeats) {
                let t0 = Date()
                _ = try model.reevaluateTail(state, fromLayer: from, override: o, rows: [0, 1, 2, 3])
                tail.append(Date().timeIntervalSince(t0))
            }
            try emit(["what": "tail", "tokens": n, "layers": model.layerCount - from, "seconds": median(tail), "fraction_of_prefill": median(tail) / full])
            // NGD's unit of work: the tail gradient of k = 3 neighbours as one batch.
            let batch = [state, state, state]
            _ = try model.tailGradients(batch, override: o, rows: Array(repeating: [0, 1, 2, 3], count: 3), targets: [0, 1, 2])
            var grad: [Double] = []
            for _ in 0..<gradientRepeats {
                let t0 = Date()
                _ = try model.tailGradients(batch, override: o, rows: Array(repeating: [0, 1, 2, 3], count: 3), targets: [0, 1, 2])
                grad.append(Date().timeIntervalSince(t0))
            }
            if profile.enabled {
                profile.reset()
                _ = try model.tailGradients(batch, override: o, rows: Array(repeating: [0, 1, 2, 3], count: 3), targets: [0, 1, 2])
                try emit(["what": "tail_gradient_profile", "stages": profile.snapshot().filter { $0.stage.hasPrefix("grad") }.map { [$0.stage, $0.seconds, $0.cpuSeconds] as [Any] }])
            }
            try emit(["what": "tail_gradient", "tokens": n, "layers": model.layerCount - from, "rows": 3, "seconds": median(grad),
                      "fraction_of_prefill": median(grad) / full])
        }
    }

    /// The process's page faults so far (getrusage): minor (page already in memory) and major (read from disk).
    func pageFaults() -> (minor: Int, major: Int) {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return (Int(u.ru_minflt), Int(u.ru_majflt))
    }

    func peakRSS() -> Int {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return -1 }
        for line in s.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            return Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") ?? -1
        }
        return -1
    }
}
