import C3POCore
import Foundation
import XCTest

/// Parallel regions on the kernels' worker pool: every item runs once on a worker numbered
/// below the count asked for, including regions started inside a task (which the pool refuses
/// and Dispatch runs) and regions started from several threads at once.
final class ParallelTests: XCTestCase {
    /// Counts of each item and the largest worker id seen, over one region.
    final class Tally: @unchecked Sendable {
        let lock = NSLock()
        var counts: [Int]
        var maxWorker = -1
        init(_ n: Int) { counts = Array(repeating: 0, count: n) }
        func note(_ worker: Int, _ item: Int) { lock.lock(); counts[item] += 1; maxWorker = max(maxWorker, worker); lock.unlock() }
    }

    func testEveryItemRunsOnceOnAWorkerBelowTheCount() {
        for (items, workers) in [(1, 2), (2, 2), (7, 2), (100, 3), (1000, 2), (5, 1)] {
            for _ in 0..<50 {
                let tally = Tally(items)
                Parallel.dynamicForEach(items, workers: workers) { w, i in tally.note(w, i) }
                XCTAssertEqual(tally.counts, Array(repeating: 1, count: items), "\(items) items, \(workers) workers")
                XCTAssertLessThan(tally.maxWorker, max(1, min(items, workers)))
            }
            var seen = Array(repeating: 0, count: items)
            let lock = NSLock()
            Parallel.forEach(items, threads: workers) { i in lock.lock(); seen[i] += 1; lock.unlock() }
            XCTAssertEqual(seen, Array(repeating: 1, count: items))
        }
    }

    func testRegionsInsideTasksAndFromSeveralThreadsComplete() {
        // Nested: each task runs a region of its own.
        let outer = Tally(6)
        let inner = (0..<6).map { _ in Tally(40) }
        Parallel.dynamicForEach(6, workers: 2) { w, i in
            outer.note(w, i)
            Parallel.dynamicForEach(40, workers: 2) { w2, j in inner[i].note(w2, j) }
        }
        XCTAssertEqual(outer.counts, Array(repeating: 1, count: 6))
        for t in inner { XCTAssertEqual(t.counts, Array(repeating: 1, count: 40)) }
        // Four threads starting regions at once, many times: one gets the pool, the others Dispatch.
        let tallies = (0..<4).map { _ in Tally(64) }
        DispatchQueue.concurrentPerform(iterations: 4) { t in
            for _ in 0..<200 {
                let tally = Tally(64)
                Parallel.dynamicForEach(64, workers: 2) { w, i in tally.note(w, i) }
                tallies[t].lock.lock()
                for i in 0..<64 { tallies[t].counts[i] += tally.counts[i] }
                tallies[t].lock.unlock()
            }
        }
        for t in tallies { XCTAssertEqual(t.counts, Array(repeating: 200, count: 64)) }
    }

    /// After a pause long enough for the helpers to go to sleep, a region still runs every item
    /// (they are woken, or the caller does the work).
    func testRegionsAfterTheHelpersSleep() {
        for _ in 0..<5 {
            Thread.sleep(forTimeInterval: 0.01)
            let tally = Tally(16)
            Parallel.dynamicForEach(16, workers: 2) { w, i in tally.note(w, i) }
            XCTAssertEqual(tally.counts, Array(repeating: 1, count: 16))
        }
    }
}
