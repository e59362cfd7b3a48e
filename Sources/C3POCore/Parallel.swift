import CKernels
import Dispatch
import Foundation

public enum Parallel {
    /// Threads our own loops use: `C3PO_THREADS`, else the active processor count.
    public static var defaultThreads: Int {
        if let t = ProcessInfo.processInfo.environment["C3PO_THREADS"], let n = Int(t), n > 0 { return n }
        return ProcessInfo.processInfo.activeProcessorCount
    }

    /// Runs `body(i)` for i in 0..<count on up to `threads` workers, in contiguous chunks.
    public static func forEach(_ count: Int, threads: Int = Parallel.defaultThreads, _ body: (Int) -> Void) {
        let workers = max(1, min(threads, count))
        if workers == 1 {
            for i in 0..<count { body(i) }
            return
        }
        region(workers, workers: workers) { _, w in
            let lo = count * w / workers, hi = count * (w + 1) / workers
            for i in lo..<hi { body(i) }
        }
    }

    /// Runs `body(worker, item)` for items 0..<count on up to `workers` threads, handing items out
    /// one at a time (for items of unequal cost: experts with unequal token counts, weight blocks).
    public static func dynamicForEach(_ count: Int, workers: Int, _ body: (Int, Int) -> Void) {
        let n = max(1, min(workers, count))
        if n == 1 { for i in 0..<count { body(0, i) }; return }
        region(count, workers: n, body)
    }

    /// body(worker, item) for items 0..<count, handed out one at a time, on the kernels' worker
    /// pool (c3po_parallel: its helpers spin briefly between regions instead of sleeping, which
    /// the many short regions of one sentence's or one tail step's forward pass notice). A region
    /// started while the pool runs another one (on another thread, or inside one of its tasks)
    /// runs on Dispatch's threads instead.
    static func region(_ count: Int, workers n: Int, _ body: (Int, Int) -> Void) {
        let ran = withoutActuallyEscaping(body) { body -> Int32 in
            var task = body
            return withUnsafeMutablePointer(to: &task) { p in
                c3po_parallel(count, n, { ctx, worker, item in
                    ctx!.assumingMemoryBound(to: ((Int, Int) -> Void).self).pointee(worker, item)
                }, p)
            }
        }
        guard ran == C3PO_POOL_BUSY else { return }
        let lock = NSLock()
        var next = 0
        DispatchQueue.concurrentPerform(iterations: n) { w in
            while true {
                lock.lock(); let i = next; next += 1; lock.unlock()
                if i >= count { break }
                body(w, i)
            }
        }
    }
}

/// Per-worker scratch buffers, grown on demand. Each worker's slot is its own memory (raw
/// storage, not a Swift array: workers growing their slots at once must not touch one array
/// value, which ThreadSanitizer reports as an access race).
public final class ScratchPool: @unchecked Sendable {
    public let workers: Int
    private let buffers: UnsafeMutablePointer<UnsafeMutablePointer<Float>>
    private let sizes: UnsafeMutablePointer<Int>
    public init(workers: Int) {
        self.workers = workers
        buffers = .allocate(capacity: workers)
        sizes = .allocate(capacity: workers)
        for w in 0..<workers {
            (buffers + w).initialize(to: UnsafeMutablePointer<Float>.allocate(capacity: 1))
            (sizes + w).initialize(to: 1)
        }
    }
    deinit {
        for w in 0..<workers { buffers[w].deallocate() }
        buffers.deallocate()
        sizes.deallocate()
    }
    /// Worker `w`'s buffer of at least `count` floats (only worker `w` may call this for `w`).
    public func buffer(_ w: Int, _ count: Int) -> UnsafeMutablePointer<Float> {
        if sizes[w] < count {
            buffers[w].deallocate()
            buffers[w] = UnsafeMutablePointer<Float>.allocate(capacity: count)
            sizes[w] = count
        }
        return buffers[w]
    }
}
