import Foundation

/// One part of a job split across machines (`--shard K/N`): record `id` belongs to shard
/// `stableHash(id) % N`. The hash is FNV-1a (64 bit) of the id's UTF-8 bytes, then the
/// SplitMix64 finalizer (so that ids that differ in their last character spread over all
/// shards, whatever N), so a record's
/// shard depends on its id alone: adding sources or reordering them never moves a record
/// to another shard, and every machine computes the same partition.
public struct ShardSpec: Sendable, Equatable, Codable, CustomStringConvertible {
    /// 0-based.
    public var index: Int
    public var count: Int

    public init(index: Int, count: Int) throws {
        guard count >= 1 else { throw ShardError("shard count must be at least 1, got \(count)") }
        guard (0..<count).contains(index) else { throw ShardError("shard \(index) outside 0..<\(count)") }
        self.index = index; self.count = count
    }

    /// `K/N`; `auto` (Slurm job arrays: `SLURM_ARRAY_TASK_ID` and `SLURM_ARRAY_TASK_COUNT`);
    /// `auto/N` (a scheduler that gives the index only: `SLURM_ARRAY_TASK_ID`, else
    /// Kubernetes Indexed Jobs' `JOB_COMPLETION_INDEX`, with N given).
    public init(parsing text: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        func int(_ s: String, _ what: String) throws -> Int {
            guard let v = Int(s.trimmingCharacters(in: .whitespaces)) else { throw ShardError("\(what) '\(s)' is not an integer") }
            return v
        }
        if parts[0] == "auto" {
            let count: Int
            if parts.count == 2 {
                count = try int(parts[1], "shard count")
            } else {
                guard let c = environment["SLURM_ARRAY_TASK_COUNT"] else {
                    throw ShardError("--shard auto needs SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT (a Slurm job array); elsewhere give auto/N (index from JOB_COMPLETION_INDEX) or K/N")
                }
                count = try int(c, "SLURM_ARRAY_TASK_COUNT")
            }
            guard let k = environment["SLURM_ARRAY_TASK_ID"] ?? environment["JOB_COMPLETION_INDEX"] else {
                throw ShardError("--shard \(text): neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is set")
            }
            // An array 1-N (sbatch --array=1-4) has no 0: use --array=0-(N-1), as Scripts/slurm does.
            try self.init(index: try int(k, "task index"), count: count)
        } else {
            guard parts.count == 2 else { throw ShardError("--shard expects K/N (e.g. 0/4), auto or auto/N, got '\(text)'") }
            try self.init(index: try int(parts[0], "shard index"), count: try int(parts[1], "shard count"))
        }
    }

    enum CodingKeys: String, CodingKey { case index, count }

    /// Decoded with the same checks as `init(index:count:)` (a shard file may be hostile).
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(index: try c.decode(Int.self, forKey: .index), count: try c.decode(Int.self, forKey: .count))
    }

    /// FNV-1a (64 bit), then the SplitMix64 finalizer.
    public static func stableHash(_ id: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in id.utf8 { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        h = (h ^ (h >> 30)) &* 0xbf58_476d_1ce4_e5b9
        h = (h ^ (h >> 27)) &* 0x94d0_49bb_1331_11eb
        return h ^ (h >> 31)
    }

    public func contains(_ id: String) -> Bool { Int(Self.stableHash(id) % UInt64(count)) == index }

    /// `shard-K-of-N`: the folder (and file stem) of one part.
    public var name: String { "shard-\(index)-of-\(count)" }
    public var description: String { "\(index)/\(count)" }
}

public struct ShardError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
