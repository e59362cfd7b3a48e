import C3POCore
import CBLAS
import Foundation
import XCTest

final class BLASTests: XCTestCase {
    func testSgemmMatchesHandComputation() {
        // A [2,3] · B [3,2] = C [2,2], computed by hand:
        // [1 2 3]   [ 7  8]   [1·7+2·9+3·11  1·8+2·10+3·12]   [ 58  64]
        // [4 5 6] · [ 9 10] = [4·7+5·9+6·11  4·8+5·10+6·12] = [139 154]
        //           [11 12]
        let a: [Float] = [1, 2, 3, 4, 5, 6]
        let b: [Float] = [7, 8, 9, 10, 11, 12]
        var c = [Float](repeating: -1, count: 4)
        BLAS.sgemm(m: 2, n: 2, k: 3, a: a, lda: 3, b: b, ldb: 2, c: &c, ldc: 2)
        XCTAssertEqual(c, [58, 64, 139, 154])
    }

    func testLinearUsesTransposedWeightAndBias() {
        // W [out=2, in=3]; y = x Wᵀ + b.
        let x: [Float] = [1, 0, -1]
        let w: [Float] = [1, 2, 3, 4, 5, 6]
        let bias: [Float] = [10, 20]
        var y = [Float](repeating: 0, count: 2)
        x.withUnsafeBufferPointer { xb in w.withUnsafeBytes { wb in bias.withUnsafeBufferPointer { bb in y.withUnsafeMutableBufferPointer { yb in
            MatMul.linear(xb.baseAddress!, rows: 1, inFeatures: 3, weight: wb.baseAddress!, dtype: .f32, outFeatures: 2,
                          bias: bb.baseAddress!, into: yb.baseAddress!, threads: 1)
        } } } }
        XCTAssertEqual(y, [1 - 3 + 10, 4 - 6 + 20])
    }
}

final class NPYTests: XCTestCase {
    func testHostileShapesAreRefusedNotTrapped() throws {
        for shape in ["(1099511627776, 1099511627776)", "(4611686018427387904, 4)", "(9223372036854775807,)"] {
            var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shape), }"
            header += String(repeating: " ", count: (64 - (10 + header.utf8.count + 1) % 64) % 64) + "\n"
            var bytes = [UInt8]([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xff), UInt8(header.utf8.count >> 8)])
            bytes += Array(header.utf8) + [0, 0, 0, 0]
            XCTAssertThrowsError(try bytes.withUnsafeBytes { try NPY.decodeFloats($0, url: URL(fileURLWithPath: "x.npy")) }, shape) {
                XCTAssertTrue("\($0)".contains("data holds 4 bytes"), "\($0)")
            }
        }
    }

    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/core")

    func testReadsFilesWrittenByNumPy() throws {
        let expected = (0..<12).map { Float($0) / 7 }
        let (h32, v32) = try NPY.readFloats(fixtures.appendingPathComponent("numpy_f32.npy"))
        XCTAssertEqual(h32.shape, [3, 4])
        XCTAssertEqual(h32.dtype, .float32)
        XCTAssertEqual(v32, expected)
        let (h16, v16) = try NPY.readFloats(fixtures.appendingPathComponent("numpy_f16.npy"))
        XCTAssertEqual(h16.dtype, .float16)
        for (a, b) in zip(v16, expected) { XCTAssertEqual(a, b, accuracy: 2e-3) }
    }

    func testWriteThenReadRoundTripAndHeaderAlignment() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("npy-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("x.npy")
        let values: [Float] = [0.5, -1, 3.25, 1e-3, 7, 8]
        try NPY.write(float32: values, shape: [2, 3], to: url)
        let data = try Data(contentsOf: url)
        XCTAssertEqual((data.count - 24) % 64, 0, "header must pad data to a 64-byte boundary")
        let (h, v) = try NPY.readFloats(url)
        XCTAssertEqual(h.shape, [2, 3])
        XCTAssertEqual(v, values)
        XCTAssertThrowsError(try NPY.write(float32: values, shape: [4, 2], to: url))
    }

    func testTruncatedFileIsAnError() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("trunc-\(UUID()).npy")
        defer { try? FileManager.default.removeItem(at: url) }
        let full = try Data(contentsOf: fixtures.appendingPathComponent("numpy_f32.npy"))
        try full.prefix(full.count - 4).write(to: url)
        XCTAssertThrowsError(try NPY.readFloats(url)) { error in
            XCTAssertTrue("\(error)".contains("data holds"), "\(error)")
        }
    }
}

final class SHA256Tests: XCTestCase {
    func testNISTVectors() {
        func hex(_ s: String) -> String {
            var h = SHA256Hasher(); h.update(Data(s.utf8)); return h.finalize()
        }
        XCTAssertEqual(hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        var h = SHA256Hasher()
        let chunk = Data(repeating: UInt8(ascii: "a"), count: 1000)
        for _ in 0..<1000 { h.update(chunk) } // one million 'a', fed in uneven blocks
        XCTAssertEqual(h.finalize(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}

final class AtomicWriteTests: XCTestCase {
    func testFailedDirectoryBuildLeavesOldContentIntact() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("atomic-\(UUID())")
        defer { try? FileManager.default.removeItem(at: root) }
        let dest = root.appendingPathComponent("index")
        try AtomicWrite.buildDirectory(at: dest) { tmp in
            try Data("old".utf8).write(to: tmp.appendingPathComponent("manifest.json"))
        }
        struct Boom: Error {}
        XCTAssertThrowsError(try AtomicWrite.buildDirectory(at: dest) { tmp in
            try Data("new".utf8).write(to: tmp.appendingPathComponent("manifest.json"))
            throw Boom()
        })
        XCTAssertEqual(try String(contentsOf: dest.appendingPathComponent("manifest.json"), encoding: .utf8), "old")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: root.path).filter { $0 != "index" }
        XCTAssertEqual(leftovers, [], "temporary siblings must be cleaned up")
        try AtomicWrite.buildDirectory(at: dest) { tmp in
            try Data("new".utf8).write(to: tmp.appendingPathComponent("manifest.json"))
        }
        XCTAssertEqual(try String(contentsOf: dest.appendingPathComponent("manifest.json"), encoding: .utf8), "new")
    }
}

final class SafetensorsTests: XCTestCase {
    /// Builds a safetensors file from a header dictionary and raw data.
    func makeFile(_ header: [String: Any], data: [UInt8]) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("st-\(UUID()).safetensors")
        let json = try JSONSerialization.data(withJSONObject: header)
        var out = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        out.append(contentsOf: data)
        try out.write(to: url)
        return url
    }

    func testReadsF32AndBF16() throws {
        let f: [Float] = [1, -2, 0.5, 3]
        var bytes = [UInt8]()
        f.withUnsafeBytes { bytes += $0 }
        // bfloat16 of 1.0 is 0x3F80, of -2.0 is 0xC000.
        bytes += [0x80, 0x3F, 0x00, 0xC0]
        let url = try makeFile([
            "a": ["dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]],
            "b": ["dtype": "BF16", "shape": [2], "data_offsets": [16, 20]],
        ], data: bytes)
        defer { try? FileManager.default.removeItem(at: url) }
        let file = try SafetensorsFile(url: url)
        XCTAssertEqual(try file.tensor("a").floats(), f)
        XCTAssertEqual(try file.tensor("b").floats(), [1, -2])
        XCTAssertEqual(try file.tensor("a").shape, [2, 2])
    }

    func testMalformedHeadersNameTheTensor() throws {
        let cases: [(String, [String: Any], String)] = [
            ("out of bounds", ["w": ["dtype": "F32", "shape": [4], "data_offsets": [0, 64]]], "'w': data_offsets"),
            ("size mismatch", ["w": ["dtype": "F32", "shape": [3], "data_offsets": [0, 16]]], "'w': shape [3]"),
            ("unknown dtype", ["w": ["dtype": "Q4", "shape": [4], "data_offsets": [0, 16]]], "'w': unknown dtype Q4"),
            ("overlap", ["w": ["dtype": "F32", "shape": [4], "data_offsets": [0, 16]],
                         "v": ["dtype": "F32", "shape": [2], "data_offsets": [8, 16]]], "overlaps"),
        ]
        for (label, header, expected) in cases {
            let url = try makeFile(header, data: [UInt8](repeating: 0, count: 16))
            defer { try? FileManager.default.removeItem(at: url) }
            XCTAssertThrowsError(try SafetensorsFile(url: url), label) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(label): \(error)")
            }
        }
        // A header length larger than the file.
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("st-\(UUID()).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try Data([0xff, 0xff, 0, 0, 0, 0, 0, 0, 0x7b]).write(to: url)
        XCTAssertThrowsError(try SafetensorsFile(url: url)) { XCTAssertTrue("\($0)".contains("exceeds the file"), "\($0)") }
    }
}

final class CriticalLayersTests: XCTestCase {
    func testTheLastFiveRoutedLayers() {
        XCTAssertEqual(CriticalLayers.last(CriticalLayers.defaultCount, of: Array(0..<16)), [11, 12, 13, 14, 15])
        XCTAssertEqual(CriticalLayers.last(CriticalLayers.defaultCount, of: Array(0..<3)), [0, 1, 2])
        // A dense layer (no router) is never critical.
        XCTAssertEqual(CriticalLayers.last(3, of: [0, 2, 3, 5]), [2, 3, 5])
    }
}

/// The one parser of the official routing form: the same rules for a reference record
/// (every layer) and an override (some layers of a known model).
final class OfficialRoutingRulesTests: XCTestCase {
    func read(_ json: String, layers: Int = 4, experts: Int = 2) throws -> [Int: [Float]] {
        try OfficialRouting.read(document: Data(json.utf8), layerCount: layers, experts: experts)
    }

    func layers(_ json: String) throws -> [OfficialRouting.Layer] {
        var problem: String?
        let parsed = try Data(json.utf8).withUnsafeBytes { raw -> [OfficialRouting.Layer]? in
            var s = JSONScanner(raw)
            return try OfficialRouting.parse(&s, field: "", problem: &problem)
        }
        if let problem { throw OfficialRouting.Problem(problem) }
        return parsed ?? []
    }

    func testEveryRuleHoldsInBothModes() throws {
        let bad: [(String, String)] = [
            (#"{"layer": 0, "routing_weights": {"expert_0": 0.5, "expert_1": 0.25}}"#, "sum to 0.75"),
            (#"{"layer": 0, "routing_weights": {"expert_0": -0.5, "expert_1": 1.5}}"#, "negative"),
            (#"{"layer": 0, "routing_weights": {"expert_0": 1, "expert_0": 0}}"#, "listed twice"),
            (#"{"layer": 0, "routing_weights": {"expert_0": 1, "e1": 0}}"#, "not expert_<i>"),
            (#"{"layer": 0, "routing_weights": {"expert_0": NaN, "expert_1": 1}}"#, "not finite"),
        ]
        for (layer, fragment) in bad {
            let doc = #"{"layers": [\#(layer)]}"#
            XCTAssertThrowsError(try read(doc)) { XCTAssertTrue("\($0)".contains(fragment), "override: \($0)") }
            XCTAssertThrowsError(try OfficialRouting.check(try layers(doc), experts: nil, layers: .all)) {
                XCTAssertTrue("\($0)".contains(fragment), "record: \($0)")
            }
        }
        // An override names some layers; every expert of each, once.
        XCTAssertThrowsError(try read(#"{"layers": [{"layer": 1, "routing_weights": {"expert_0": 1}}]}"#)) {
            XCTAssertTrue("\($0)".contains("every expert once"), "\($0)")
        }
        XCTAssertThrowsError(try read(#"{"layers": [{"layer": 4, "routing_weights": {"expert_0": 1, "expert_1": 0}}]}"#)) {
            XCTAssertTrue("\($0)".contains("layer 4 outside 0..<4"), "\($0)")
        }
        let ok = try read(#"{"layers": [{"layer": 2, "routing_weights": {"expert_1": 0.7501, "expert_0": 0.25}}]}"#)
        XCTAssertEqual(ok.keys.sorted(), [2])
        XCTAssertEqual(ok[2], [0.25, 0.7501])
    }

    /// Inputs the fuzzer found (Tests/Fuzz/regressions/official_routing): each refused with a reason, no crash.
    func testFuzzerRegressions() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fuzz/regressions/official_routing")
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        XCTAssertFalse(files.isEmpty)
        for f in files {
            XCTAssertThrowsError(try OfficialRouting.read(document: Data(contentsOf: dir.appendingPathComponent(f)), layerCount: 16, experts: 64), f)
        }
        // Only negative expert keys (the first find): named, in both modes.
        let doc = #"{"layers": [{"layer": 0, "routing_weights": {"expert_-28": 1}}]}"#
        XCTAssertThrowsError(try read(doc)) { XCTAssertTrue("\($0)".contains("'expert_-28' outside"), "\($0)") }
        XCTAssertThrowsError(try OfficialRouting.check(try layers(doc), experts: nil, layers: .all)) {
            XCTAssertTrue("\($0)".contains("'expert_-28' outside"), "\($0)")
        }
    }

    func testWrittenFormReadsBack() throws {
        // Un-normalised weights are written normalised, every expert listed: the rules accept them back.
        let object = OfficialRouting.object([3: [2, 0, 6], 0: [1, 1, 2]])
        let data = try JSONSerialization.data(withJSONObject: object)
        let back = try OfficialRouting.read(document: data, layerCount: 4, experts: 3)
        XCTAssertEqual(back.keys.sorted(), [0, 3])
        XCTAssertEqual(back[3]?.map { Double($0) } ?? [], [0.25, 0, 0.75], accuracy: 1e-7)
        XCTAssertEqual(back[0]?.map { Double($0) } ?? [], [0.25, 0.25, 0.5], accuracy: 1e-7)
    }
}

private func XCTAssertEqual(_ a: [Double], _ b: [Double], accuracy: Double, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, file: file, line: line)
    for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: accuracy, file: file, line: line) }
}

final class ShardSpecTests: XCTestCase {
    func testParsesKOfNAndTheSchedulersVariables() throws {
        XCTAssertEqual(try ShardSpec(parsing: "2/4", environment: [:]), try ShardSpec(index: 2, count: 4))
        XCTAssertEqual(try ShardSpec(parsing: "auto", environment: ["SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"]),
                       try ShardSpec(index: 3, count: 4))
        XCTAssertEqual(try ShardSpec(parsing: "auto/8", environment: ["JOB_COMPLETION_INDEX": "5"]), try ShardSpec(index: 5, count: 8))
        for (bad, fragment) in [("4/4", "outside 0..<4"), ("0/0", "at least 1"), ("x/4", "not an integer"), ("3", "expects K/N"),
                                ("auto", "SLURM_ARRAY_TASK_COUNT"), ("auto/4", "JOB_COMPLETION_INDEX")] {
            XCTAssertThrowsError(try ShardSpec(parsing: bad, environment: [:]), bad) { XCTAssertTrue("\($0)".contains(fragment), "\(bad): \($0)") }
        }
        XCTAssertEqual(try ShardSpec(index: 3, count: 16).name, "shard-3-of-16")
    }

    func testThePartitionIsTheDocumentedHashAndCoversEveryIdOnce() throws {
        // Values of the documented formula (FNV-1a 64 of the UTF-8 bytes, then SplitMix64's
        // finalizer), computed with Python's integers.
        XCTAssertEqual(ShardSpec.stableHash("sciq_17"), 3_264_776_686_265_110_094)
        XCTAssertEqual(ShardSpec.stableHash(""), 17_665_956_581_633_026_203)
        let ids = (0..<1000).map { "reference-2-\(String(format: "%05d", $0))" }
        for n in [1, 3, 16] {
            let shards = try (0..<n).map { try ShardSpec(index: $0, count: n) }
            for id in ids { XCTAssertEqual(shards.filter { $0.contains(id) }.count, 1, id) }
            let sizes = shards.map { s in ids.filter { s.contains($0) }.count }
            XCTAssertLessThan(sizes.max()! - sizes.min()!, 1000 / n / 2, "ids that differ in their last digits spread over every shard: \(sizes)")
        }
    }
}
