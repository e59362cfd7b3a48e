import Foundation

/// The `model` of a tokenizer.json with `type: BPE`, as tokenizers/src/models/bpe/{model,word}.rs
/// runs it on one pre-token: each character becomes its vocabulary id, or its UTF-8 bytes'
/// `<0xXX>` tokens (`byte_fallback`), or the unknown token (consecutive ones fused with
/// `fuse_unk`), or nothing; then merges are applied lowest rank first, leftmost on ties, with a
/// priority queue as Word::merge_all does.
final class BPEModel: @unchecked Sendable {
    struct Merge { var rank: Int32; var id: Int32 }

    /// Token → id, keyed by the token's UTF-8 bytes: Swift's `String` keys would merge
    /// canonically equivalent tokens ("é" and "e" + U+0301), which the crate keeps apart.
    private let vocab: [[UInt8]: Int]
    let idToToken: [Int: String]
    private let charIDs: [UInt32: Int]
    /// (left id, right id) → (rank, merged id)
    private let merges: [UInt64: Merge]
    private let unkID: Int?
    private let fuseUnk: Bool
    /// The ids of `<0x00>`...`<0xFF>` (-1 where absent), when `byte_fallback`.
    private let byteIDs: [Int]?
    private let ignoreMerges: Bool
    private var cache: [[Unicode.Scalar]: [Int]] = [:]
    private let cacheLock = NSLock()

    static let knownKeys: Set<String> = ["type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
                                         "fuse_unk", "byte_fallback", "ignore_merges", "vocab", "merges"]

    init(json model: [String: Any], url: URL) throws {
        let type = model["type"] as? String ?? "BPE"
        guard type == "BPE" else { throw TokenizerError.unsupported(url, "model.type '\(type)' is not supported (supported: BPE)") }
        if let unknown = model.keys.filter({ !Self.knownKeys.contains($0) }).sorted().first {
            throw TokenizerError.unsupported(url, "model.\(unknown) is not supported (known BPE options: \(Self.knownKeys.sorted().joined(separator: ", ")))")
        }
        if let p = model["continuing_subword_prefix"] as? String, !p.isEmpty {
            throw TokenizerError.unsupported(url, "model.continuing_subword_prefix '\(p)' is not supported (only empty or null)")
        }
        if let s = model["end_of_word_suffix"] as? String, !s.isEmpty {
            throw TokenizerError.unsupported(url, "model.end_of_word_suffix '\(s)' is not supported (only empty or null)")
        }
        if let d = model["dropout"] as? NSNumber, d.doubleValue > 0 {
            throw TokenizerError.unsupported(url, "model.dropout \(d) is not supported (BPE dropout is random; only null or 0)")
        }
        func flag(_ key: String) throws -> Bool {
            guard let v = model[key], !(v is NSNull) else { return false }
            guard let b = v as? Bool else { throw TokenizerError.malformed(url, "model.\(key) is not a boolean") }
            return b
        }
        ignoreMerges = try flag("ignore_merges")
        fuseUnk = try flag("fuse_unk")
        let byteFallback = try flag("byte_fallback")

        // The exact entries when the file was read from disk (ExactVocabReader), else the dictionary.
        var entries: [(token: [UInt8], id: Int)] = []
        if let exact = model["vocab"] as? ExactVocab {
            entries = exact.entries
        } else if let vocabAny = model["vocab"] as? [String: Any] {
            for (tok, v) in vocabAny {
                guard let id = (v as? NSNumber)?.intValue else { throw TokenizerError.malformed(url, "model.vocab['\(tok)'] is not an id") }
                entries.append((Array(tok.utf8), id))
            }
        } else {
            throw TokenizerError.malformed(url, "no model.vocab object")
        }
        var vocab: [[UInt8]: Int] = [:]
        var idToToken: [Int: String] = [:]
        var charIDs: [UInt32: Int] = [:]
        vocab.reserveCapacity(entries.count)
        for (bytes, id) in entries {
            let tok = String(decoding: bytes, as: UTF8.self)
            guard id >= 0 else { throw TokenizerError.malformed(url, "model.vocab['\(tok)'] is not an id") }
            vocab[bytes] = id
            idToToken[id] = tok
            let scalars = tok.unicodeScalars
            if scalars.count == 1, let s = scalars.first { charIDs[s.value] = id }
        }

        if let unk = model["unk_token"] as? String {
            guard let id = vocab[Array(unk.utf8)] else { throw TokenizerError.malformed(url, "model.unk_token '\(unk)' is not in model.vocab") }
            unkID = id
        } else {
            unkID = nil
        }
        if byteFallback {
            // tokenizers formats the byte as `<{b:#04X}>`: "<0x" and two upper-case hex digits.
            byteIDs = (0..<256).map { b in vocab[Array(String(format: "<0x%02X>", b).utf8)] ?? -1 }
        } else {
            byteIDs = nil
        }

        // Merges come as "a b" strings (tokenizers < 0.20) or ["a", "b"] pairs (newer). The crate
        // collects them into a map, so a repeated pair keeps its last rank.
        guard let mergesAny = model["merges"] as? [Any] else { throw TokenizerError.malformed(url, "no model.merges array") }
        var merges: [UInt64: Merge] = [:]
        merges.reserveCapacity(mergesAny.count)
        for (rank, m) in mergesAny.enumerated() {
            let pair: [String]
            if let s = m as? String {
                // Split on the U+0020 scalar: splitting the String by Character would miss a space
                // that a combining mark joins into one grapheme ("e \u{301}").
                let parts = s.unicodeScalars.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw TokenizerError.malformed(url, "model.merges[\(rank)] '\(s)' is not 'a b'") }
                pair = parts.map { String(String.UnicodeScalarView($0)) }
            } else if let a = m as? [String], a.count == 2 {
                pair = a
            } else {
                throw TokenizerError.malformed(url, "model.merges[\(rank)] is neither 'a b' nor [a, b]")
            }
            let left = Array(pair[0].utf8), right = Array(pair[1].utf8)
            guard let l = vocab[left], let r = vocab[right], let n = vocab[left + right] else {
                throw TokenizerError.malformed(url, "model.merges[\(rank)] \(pair) has a part or result outside the vocabulary")
            }
            merges[UInt64(l) << 32 | UInt64(r)] = Merge(rank: Int32(rank), id: Int32(n))
        }
        self.vocab = vocab
        self.idToToken = idToToken
        self.charIDs = charIDs
        self.merges = merges
    }

    func id(of token: String) -> Int? { vocab[Array(token.utf8)] }

    /// The ids of one pre-token.
    func tokenize(_ word: [Unicode.Scalar], into ids: inout [Int]) {
        guard !word.isEmpty else { return }
        if ignoreMerges, let id = vocab[Array(String(String.UnicodeScalarView(word)).utf8)] { ids.append(id); return }
        let key = word
        cacheLock.lock()
        if let hit = cache[key] { cacheLock.unlock(); ids += hit; return }
        cacheLock.unlock()
        let out = merge(symbols(of: word))
        if word.count <= 256 {
            cacheLock.lock()
            if cache.count > 100_000 { cache.removeAll() }
            cache[key] = out
            cacheLock.unlock()
        }
        ids += out
    }

    /// BPE::merge_word before the merges: one symbol per character.
    private func symbols(of word: [Unicode.Scalar]) -> [Int] {
        var out: [Int] = []
        out.reserveCapacity(word.count)
        var pendingUnk = false
        for s in word {
            if let id = charIDs[s.value] {
                if pendingUnk, let unk = unkID { out.append(unk); pendingUnk = false }
                out.append(id)
                continue
            }
            if let byteIDs {
                let bytes = Array(String(s).utf8)
                if bytes.allSatisfy({ byteIDs[Int($0)] >= 0 }) {
                    // As the crate does, a pending unknown token is not flushed before byte tokens.
                    for b in bytes { out.append(byteIDs[Int(b)]) }
                    continue
                }
            }
            guard let unk = unkID else { continue }  // no unk token: the character is dropped
            if pendingUnk && !fuseUnk { out.append(unk) }
            pendingUnk = true
        }
        if pendingUnk, let unk = unkID { out.append(unk) }
        return out
    }

    /// Word::merge_all without dropout.
    private func merge(_ ids: [Int]) -> [Int] {
        guard ids.count > 1 else { return ids }
        var id = ids
        var prev = Array(-1..<(ids.count - 1))
        var next = Array(1...ids.count)
        next[ids.count - 1] = -1
        var alive = [Bool](repeating: true, count: ids.count)
        var heap = MergeHeap()
        for p in 0..<(ids.count - 1) {
            if let m = merges[UInt64(id[p]) << 32 | UInt64(id[p + 1])] { heap.push(rank: m.rank, pos: p, newID: m.id) }
        }
        while let top = heap.pop() {
            let p = top.pos
            guard alive[p], next[p] >= 0 else { continue }
            let r = next[p]
            // An expired entry: the pair at p no longer makes this token.
            guard let m = merges[UInt64(id[p]) << 32 | UInt64(id[r])], m.id == top.newID else { continue }
            id[p] = Int(top.newID)
            alive[r] = false
            next[p] = next[r]
            if next[r] >= 0 { prev[next[r]] = p }
            if prev[p] >= 0, let m = merges[UInt64(id[prev[p]]) << 32 | UInt64(id[p])] {
                heap.push(rank: m.rank, pos: prev[p], newID: m.id)
            }
            if next[p] >= 0, let m = merges[UInt64(id[p]) << 32 | UInt64(id[next[p]])] {
                heap.push(rank: m.rank, pos: p, newID: m.id)
            }
        }
        var out: [Int] = []
        var k = 0
        while k >= 0 { out.append(id[k]); k = next[k] }
        return out
    }
}

/// A binary min-heap of merge candidates ordered by (rank, position).
private struct MergeHeap {
    struct Entry { var rank: Int32; var pos: Int; var newID: Int32 }
    private var items: [Entry] = []

    @inline(__always) private static func less(_ a: Entry, _ b: Entry) -> Bool { a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos }

    mutating func push(rank: Int32, pos: Int, newID: Int32) {
        items.append(Entry(rank: rank, pos: pos, newID: newID))
        var c = items.count - 1
        while c > 0 {
            let parent = (c - 1) / 2
            guard Self.less(items[c], items[parent]) else { break }
            items.swapAt(c, parent); c = parent
        }
    }

    mutating func pop() -> Entry? {
        guard let first = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var c = 0
            while true {
                let l = 2 * c + 1, r = l + 1
                var m = c
                if l < items.count && Self.less(items[l], items[m]) { m = l }
                if r < items.count && Self.less(items[r], items[m]) { m = r }
                if m == c { break }
                items.swapAt(c, m); c = m
            }
        }
        return first
    }
}
