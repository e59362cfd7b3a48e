import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Timers around the stages of a forward pass, for profiling without `perf`. Off unless the
/// environment sets `C3PO_PROFILE=1` (then each stage costs a few clock reads).
/// Each stage records wall time and CPU time. On a shared, loaded machine wall time mostly
/// measures the neighbours; CPU time (the process's, for stages timed on the calling
/// thread, which include their parallel workers; the worker thread's own for the expert
/// sub-stages `experts.*`, summed over workers) is what the code itself costs.
public final class StageProfile: @unchecked Sendable {
    public static let shared = StageProfile()

    public let enabled: Bool
    private let lock = NSLock()
    private var totals: [String: UInt64] = [:]
    private var cpuTotals: [String: UInt64] = [:]
    private var order: [String] = []

    init() {
        enabled = ProcessInfo.processInfo.environment["C3PO_PROFILE"].map { $0 != "" && $0 != "0" } ?? false
    }

    /// A wall-clock and a CPU-clock reading.
    struct Stamp {
        var wall: UInt64
        var cpu: UInt64
    }

    @inline(__always) static func clock(_ id: clockid_t) -> UInt64 {
        var ts = timespec()
        clock_gettime(id, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// Now, with the process's CPU time (all threads).
    @inline(__always) static func now() -> Stamp { Stamp(wall: clock(CLOCK_MONOTONIC), cpu: clock(CLOCK_PROCESS_CPUTIME_ID)) }
    /// Now, with the calling thread's CPU time (for stages inside parallel workers).
    @inline(__always) static func threadNow() -> Stamp { Stamp(wall: clock(CLOCK_MONOTONIC), cpu: clock(CLOCK_THREAD_CPUTIME_ID)) }

    /// Adds the time from `start` to `end` to `stage` (thread-safe).
    func add(_ stage: String, from start: Stamp, to end: Stamp) {
        lock.lock()
        if totals[stage] == nil { order.append(stage) }
        totals[stage, default: 0] &+= end.wall &- start.wall
        cpuTotals[stage, default: 0] &+= end.cpu &- start.cpu
        lock.unlock()
    }

    /// Runs `body`, adding its wall and process CPU time to `stage` when profiling is on.
    @inline(__always)
    public func time<T>(_ stage: String, _ body: () throws -> T) rethrows -> T {
        guard enabled else { return try body() }
        let t0 = Self.now()
        defer { add(stage, from: t0, to: Self.now()) }
        return try body()
    }

    /// For a sequence of sub-stages on one worker thread: `lap(stage)` charges the time since
    /// the previous lap (or creation) to `stage`.
    struct Laps {
        let profile: StageProfile
        var last: Stamp
        init(_ profile: StageProfile) {
            self.profile = profile
            last = profile.enabled ? StageProfile.threadNow() : Stamp(wall: 0, cpu: 0)
        }
        @inline(__always) mutating func lap(_ stage: String) {
            guard profile.enabled else { return }
            let t = StageProfile.threadNow()
            profile.add(stage, from: last, to: t)
            last = t
        }
    }

    public func reset() {
        lock.lock(); totals = [:]; cpuTotals = [:]; order = []; lock.unlock()
    }

    /// The stages so far on stderr, one a line (wall and CPU milliseconds), when profiling is on:
    /// what a tool prints at its end under `C3PO_PROFILE=1`.
    public func report(_ title: String) {
        guard enabled else { return }
        var text = "profile of \(title) (wall ms, cpu ms):\n"
        for (stage, wall, cpu) in snapshot() {
            text += "  " + stage.padding(toLength: max(28, stage.count), withPad: " ", startingAt: 0) + String(format: " %10.1f %10.1f\n", wall * 1e3, cpu * 1e3)
        }
        FileHandle.standardError.write(Data(text.utf8))
    }

    /// (stage, wall seconds, CPU seconds) in first-seen order.
    public func snapshot() -> [(stage: String, seconds: Double, cpuSeconds: Double)] {
        lock.lock(); defer { lock.unlock() }
        return order.map { ($0, Double(totals[$0] ?? 0) / 1e9, Double(cpuTotals[$0] ?? 0) / 1e9) }
    }
}
