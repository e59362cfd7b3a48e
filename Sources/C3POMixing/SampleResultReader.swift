import C3POCore
import Foundation

/// Reads a `--out` JSONL file into `SampleResult`s, streaming each line with `JSONScanner`
/// on the mapped bytes. Why not `JSONDecoder`: a 10,000-question run of a 64-expert model
/// holds about 70 MB of pathway numbers, which Foundation's decoder reads at about 10 MB/s on
/// Linux; this reader does the same in a fraction of that. The keys are those of
/// `SampleResult.CodingKeys`; a test checks that both readers agree on every field.
extension SampleResult {
    /// The rows of a `--out` file (blank lines skipped); errors name the file and line.
    public static func readJSONLines(_ url: URL) throws -> [SampleResult] {
        guard FileManager.default.fileExists(atPath: url.path) else { throw FileError.missing(url, "file") }
        let file = try MappedFile(url: url)
        let bytes = file.bytes
        var rows: [SampleResult] = []
        var start = 0, line = 0
        while start < bytes.count {
            line += 1
            var end = start
            while end < bytes.count && bytes[end] != 0x0a { end += 1 }
            let slice = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
            if slice.contains(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0d }) {
                do {
                    rows.append(try parse(slice))
                } catch let e as JSONScanner.Error {
                    throw JSONLines.LineError(url: url, line: line, reason: "not valid JSON: \(e.message) at column \(e.column)")
                } catch let e as MissingField {
                    throw JSONLines.LineError(url: url, line: line, reason: "missing field '\(e.key)'")
                }
            }
            start = end + 1
        }
        withExtendedLifetime(file) {}
        return rows
    }

    private struct MissingField: Error { var key: String }

    private static func parse(_ bytes: UnsafeRawBufferPointer) throws -> SampleResult {
        var s = JSONScanner(bytes)
        var id: String?, task: String?, gold: String?, method: String?
        var baseAnswer: String?, c3poAnswer: String?, skipped: String?, question: String?
        var baseCorrect: Bool?, c3poCorrect: Bool?
        var neighbors: [NeighborInfo]?
        var alpha: Float?, bandwidth: Float?
        var secondsBase: Double?, secondsC3PO: Double?
        var criticalLayers: [Int]?, basePathway: [Int: [Float]]?, c3poPathway: [Int: [Float]]?, coreExperts: [Int: [Int]]?

        func optional<T>(_ s: inout JSONScanner, _ read: (inout JSONScanner) throws -> T) throws -> T? {
            if try s.peek() == .null { try s.readNull(); return nil }
            return try read(&s)
        }
        func string(_ s: inout JSONScanner) throws -> String { try s.readString() }
        func ints(_ s: inout JSONScanner) throws -> [Int] {
            var out: [Int] = []
            var c = try s.beginArray()
            while try s.nextElement(&c) { out.append(Int(try s.readDouble())) }
            return out
        }
        func floats(_ s: inout JSONScanner) throws -> [Float] {
            var out: [Float] = []
            var c = try s.beginArray()
            while try s.nextElement(&c) { out.append(Float(try s.readDouble())) }
            return out
        }
        func perLayer<T>(_ s: inout JSONScanner, _ read: (inout JSONScanner) throws -> T) throws -> [Int: T] {
            var out: [Int: T] = [:]
            var c = try s.beginObject()
            while let k = try s.nextKey(&c) {
                guard let layer = Int(k.string) else { throw s.error("layer key \"\(k.string)\" is not a number") }
                out[layer] = try read(&s)
            }
            return out
        }
        func neighbour(_ s: inout JSONScanner) throws -> NeighborInfo {
            var id: String?, task: String?, similarity: Float?
            var c = try s.beginObject()
            while let k = try s.nextKey(&c) {
                if k.equals("id") { id = try s.readString() }
                else if k.equals("task") { task = try s.readString() }
                else if k.equals("similarity") { similarity = Float(try s.readDouble()) }
                else { try s.skipValue() }
            }
            guard let id else { throw MissingField(key: "neighbors.id") }
            guard let task else { throw MissingField(key: "neighbors.task") }
            guard let similarity else { throw MissingField(key: "neighbors.similarity") }
            return NeighborInfo(id: id, task: task, similarity: similarity)
        }

        var c = try s.beginObject()
        while let k = try s.nextKey(&c) {
            if k.equals("id") { id = try s.readString() }
            else if k.equals("task") { task = try s.readString() }
            else if k.equals("gold") { gold = try s.readString() }
            else if k.equals("method") { method = try s.readString() }
            else if k.equals("base_answer") { baseAnswer = try optional(&s, string) }
            else if k.equals("c3po_answer") { c3poAnswer = try optional(&s, string) }
            else if k.equals("skipped") { skipped = try optional(&s, string) }
            else if k.equals("question") { question = try optional(&s, string) }
            else if k.equals("base_correct") { baseCorrect = try s.readBool() }
            else if k.equals("c3po_correct") { c3poCorrect = try s.readBool() }
            else if k.equals("alpha") { alpha = try optional(&s) { Float(try $0.readDouble()) } }
            else if k.equals("bandwidth") { bandwidth = try optional(&s) { Float(try $0.readDouble()) } }
            else if k.equals("seconds_base") { secondsBase = try s.readDouble() }
            else if k.equals("seconds_c3po") { secondsC3PO = try s.readDouble() }
            else if k.equals("critical_layers") { criticalLayers = try optional(&s, ints) }
            else if k.equals("base_pathway") { basePathway = try optional(&s) { try perLayer(&$0, floats) } }
            else if k.equals("c3po_pathway") { c3poPathway = try optional(&s) { try perLayer(&$0, floats) } }
            else if k.equals("core_experts") { coreExperts = try optional(&s) { try perLayer(&$0, ints) } }
            else if k.equals("neighbors") {
                var list: [NeighborInfo] = []
                var a = try s.beginArray()
                while try s.nextElement(&a) { list.append(try neighbour(&s)) }
                neighbors = list
            } else { try s.skipValue() }
        }
        try s.finish()
        guard let id else { throw MissingField(key: "id") }
        guard let task else { throw MissingField(key: "task") }
        guard let gold else { throw MissingField(key: "gold") }
        guard let method else { throw MissingField(key: "method") }
        guard let baseCorrect else { throw MissingField(key: "base_correct") }
        guard let c3poCorrect else { throw MissingField(key: "c3po_correct") }
        guard let neighbors else { throw MissingField(key: "neighbors") }
        guard let secondsBase else { throw MissingField(key: "seconds_base") }
        guard let secondsC3PO else { throw MissingField(key: "seconds_c3po") }
        return SampleResult(id: id, task: task, gold: gold, baseAnswer: baseAnswer, c3poAnswer: c3poAnswer,
                            baseCorrect: baseCorrect, c3poCorrect: c3poCorrect, neighbors: neighbors, alpha: alpha,
                            bandwidth: bandwidth, method: method, secondsBase: secondsBase, secondsC3PO: secondsC3PO,
                            skipped: skipped, question: question, criticalLayers: criticalLayers, basePathway: basePathway,
                            c3poPathway: c3poPathway, coreExperts: coreExperts)
    }
}
