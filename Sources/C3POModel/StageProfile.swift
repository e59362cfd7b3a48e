import Dispatch
import Foundation

/// Wall-clock timers around the stages of a forward pass, for profiling without `perf`.
/// Off unless the environment sets `C3PO_PROFILE=1` (then each stage costs two clock
/// reads). Stages timed on the calling thread add wall time; the expert sub-stages
/// (`experts.*`) are summed over workers, so with 2 workers they add up to about twice
/// the `experts` wall time.
public final class StageProfile: @unchecked Sendable {
    public static let shared = StageProfile()

    public let enabled: Bool
    private let lock = NSLock()
    private var totals: [String: UInt64] = [:]
    private var order: [String] = []

    init() {
        enabled = ProcessInfo.processInfo.environment["C3PO_PROFILE"].map { $0 != "" && $0 != "0" } ?? false
    }

    @inline(__always) static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// Adds `ns` nanoseconds to `stage` (thread-safe).
    func add(_ stage: String, _ ns: UInt64) {
        lock.lock()
        if totals[stage] == nil { order.append(stage) }
        totals[stage, default: 0] &+= ns
        lock.unlock()
    }

    /// Runs `body`, adding its wall time to `stage` when profiling is on.
    @inline(__always)
    func time<T>(_ stage: String, _ body: () throws -> T) rethrows -> T {
        guard enabled else { return try body() }
        let t0 = Self.now()
        defer { add(stage, Self.now() - t0) }
        return try body()
    }

    public func reset() {
        lock.lock(); totals = [:]; order = []; lock.unlock()
    }

    /// (stage, seconds) in first-seen order.
    public func snapshot() -> [(stage: String, seconds: Double)] {
        lock.lock(); defer { lock.unlock() }
        return order.map { ($0, Double(totals[$0] ?? 0) / 1e9) }
    }
}
