import C3POCore
import C3POModel
import Foundation
import XCTest

/// Strict loading: each broken checkpoint fails with an error naming the field or tensor.
final class LoadingErrorTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: MoEFixtures.directory.appendingPathComponent("olmoe-f32"), to: dir)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func editConfig(_ edit: (inout [String: Any]) -> Void) throws {
        let url = dir.appendingPathComponent("config.json")
        var obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        edit(&obj)
        try JSONSerialization.data(withJSONObject: obj).write(to: url)
    }

    /// Rewrites model.safetensors with the tensors `edit` leaves (as raw f32 bytes + shapes).
    func editTensors(_ edit: (inout [String: ([Int], [Float])]) -> Void) throws {
        try SafetensorsRewrite.rewrite(dir.appendingPathComponent("model.safetensors"), edit: edit)
    }

    func assertLoadFails(_ mustMention: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try ModelLoader.load(directory: dir), file: file, line: line) { error in
            XCTAssertTrue("\(error)".contains(mustMention), "error '\(error)' does not name '\(mustMention)'", file: file, line: line)
        }
    }

    /// A sparse file of `size` bytes whose first 8 bytes are `headerLength` (little-endian).
    func sparse(_ url: URL, size: UInt64, headerLength: UInt64? = nil) throws {
        FileManager.default.createFile(atPath: url.path, contents: nil)
        let h = try FileHandle(forWritingTo: url)
        if var len = headerLength?.littleEndian { try h.write(contentsOf: withUnsafeBytes(of: &len) { Data($0) }) }
        try h.truncate(atOffset: size)
        try h.close()
    }

    func testAbsurdSafetensorsHeaderIsRefusedBeforeItIsRead() throws {
        let limit = UInt64(SafetensorsFile.maxHeaderBytes)
        try sparse(dir.appendingPathComponent("model.safetensors"), size: limit + 64, headerLength: limit + 1)
        assertLoadFails("header length \(limit + 1) exceeds the limit of \(limit) bytes")
    }

    func testAbsurdShardIndexIsRefusedBeforeItIsRead() throws {
        try sparse(dir.appendingPathComponent("model.safetensors.index.json"), size: UInt64(SafetensorsFile.maxIndexBytes) + 1)
        assertLoadFails("exceed the limit of \(SafetensorsFile.maxIndexBytes) for a shard index")
    }

    func testAbsurdConfigAndTokenizerAreRefusedBeforeTheyAreRead() throws {
        let config = dir.appendingPathComponent("config.json")
        let kept = try Data(contentsOf: config)
        try sparse(config, size: UInt64(ModelLoader.maxConfigBytes) + 1)
        assertLoadFails("bytes exceed the limit of \(ModelLoader.maxConfigBytes) bytes for a config.json")
        try kept.write(to: config)
        try sparse(dir.appendingPathComponent("tokenizer.json"), size: UInt64(TokenizerLoader.maxBytes) + 1)
        assertLoadFails("bytes exceed the limit of \(TokenizerLoader.maxBytes) bytes for a tokenizer.json")
    }

    func testIntactCopyLoads() throws { XCTAssertEqual(try ModelLoader.load(directory: dir).layerCount, 2) }

    func testMissingTensor() throws {
        try editTensors { $0["model.layers.1.mlp.experts.3.up_proj.weight"] = nil }
        assertLoadFails("model.layers.1.mlp.experts.3.up_proj.weight")
    }

    func testWrongShape() throws {
        try editTensors { $0["model.layers.0.self_attn.q_norm.weight"] = ([32], [Float](repeating: 1, count: 32)) }
        assertLoadFails("model.layers.0.self_attn.q_norm.weight")
    }

    func testUnexpectedTensor() throws {
        try editTensors { $0["model.layers.0.mlp.shared_expert.weight"] = ([2], [1, 2]) }
        assertLoadFails("model.layers.0.mlp.shared_expert.weight")
    }

    func testTopKAboveExpertCount() throws {
        try editConfig { $0["num_experts_per_tok"] = 9 }
        assertLoadFails("num_experts_per_tok")
    }

    func testMissingConfigField() throws {
        try editConfig { $0["hidden_size"] = nil }
        assertLoadFails("hidden_size")
    }

    func testUnsupportedModelType() throws {
        try editConfig { $0["model_type"] = "granitemoe" }
        assertLoadFails("model_type 'granitemoe' is not supported (supported: olmoe, qwen2_moe, qwen3_moe, mixtral, deepseek)")
    }

    func testAnotherFamilysConfigNamesItsMissingField() throws {
        // An OLMoE config relabelled as Mixtral lacks Mixtral's expert count: the field is named.
        try editConfig { $0["model_type"] = "mixtral" }
        assertLoadFails("num_local_experts")
    }

    func testScaledRopeIsRefusedByName() throws {
        try editConfig { $0["rope_scaling"] = ["type": "yarn", "factor": 4.0] }
        assertLoadFails("rope_scaling.rope_type")
        try editConfig { $0["rope_scaling"] = nil; $0["rope_parameters"] = ["rope_type": "llama3", "rope_theta": 10000.0] }
        assertLoadFails("'llama3' is not supported")
    }

    func testRopeThetaTopLevelIsRead() throws {
        // rope_theta at the top level (older configs) instead of under rope_parameters: same model.
        let base = try ModelLoader.load(directory: dir).prefill([1, 2, 3], override: nil).logits
        try editConfig { $0["rope_parameters"] = nil; $0["rope_theta"] = 10000.0 }
        XCTAssertEqual(try ModelLoader.load(directory: dir).prefill([1, 2, 3], override: nil).logits, base)
        try editConfig { $0["rope_theta"] = 500.0 }
        XCTAssertNotEqual(try ModelLoader.load(directory: dir).prefill([1, 2, 3], override: nil).logits, base)
    }

    func testFusedExpertLayoutGivesTheSameLogits() throws {
        let base = try ModelLoader.load(directory: dir).prefill([5, 6, 7, 8], override: nil).logits
        try editTensors { t in
            for l in 0..<2 {
                var gateUp: [Float] = [], down: [Float] = []
                for e in 0..<8 {
                    let p = "model.layers.\(l).mlp.experts.\(e)."
                    gateUp += t[p + "gate_proj.weight"]!.1 + t[p + "up_proj.weight"]!.1
                    down += t[p + "down_proj.weight"]!.1
                    for k in ["gate_proj", "up_proj", "down_proj"] { t[p + k + ".weight"] = nil }
                }
                t["model.layers.\(l).mlp.experts.gate_up_proj"] = ([8, 64, 64], gateUp)
                t["model.layers.\(l).mlp.experts.down_proj"] = ([8, 64, 32], down)
            }
        }
        XCTAssertEqual(try ModelLoader.load(directory: dir).prefill([5, 6, 7, 8], override: nil).logits, base)
    }
}

final class OfficialRoutingTests: XCTestCase {
    func parse(_ json: String) throws -> RoutingOverride {
        try RoutingOverride(officialJSON: Data(json.utf8), layers: 16, experts: 64, source: "r.json")
    }

    func testParsesTheOfficialForm() throws {
        // Every expert once, summing to 1 (the one rule set of OfficialRouting, C3POCore).
        let rest = (0..<64).filter { $0 != 3 && $0 != 63 }.map { "\"expert_\($0)\": \(0.25 / 62)" }.joined(separator: ", ")
        let o = try parse(#"{"layers": [{"layer": 11, "routing_weights": {"expert_3": 0.5, "expert_63": 0.25, "# + rest + "}}]}")
        XCTAssertEqual(o.layers.keys.sorted(), [11])
        XCTAssertEqual(o.layers[11]?[3], 0.5)
        XCTAssertEqual(o.layers[11]?[63], 0.25)
        XCTAssertEqual(o.layers[11]?.reduce(0, +) ?? 0, 1, accuracy: 1e-6)
        // Written back as read (normalised per layer, every expert listed).
        let back = try RoutingOverride(officialJSON: o.officialJSON(), layers: 16, experts: 64)
        XCTAssertEqual(back.layers[11]?[3] ?? 0, 0.5, accuracy: 1e-6)
        XCTAssertEqual(back.layers[11]?[63] ?? 0, 0.25, accuracy: 1e-6)
        // A layer that does not sum to 1 is refused, by layer.
        XCTAssertThrowsError(try parse(#"{"layers": [{"layer": 11, "routing_weights": {"expert_3": 0.5, "expert_63": 0.25, "# + rest.replacingOccurrences(of: "\(0.25 / 62)", with: "0") + "}}]}")) {
            XCTAssertTrue("\($0)".contains("layer 11") && "\($0)".contains("sum to 0.75"), "\($0)")
        }
    }

    func testRejectsLayerOutOfRange() {
        XCTAssertThrowsError(try parse(#"{"layers": [{"layer": 16, "routing_weights": {"expert_0": 1}}]}"#)) {
            XCTAssertTrue("\($0)".contains("layer 16"), "\($0)")
        }
    }

    func testRejectsExpertOutOfRange() {
        XCTAssertThrowsError(try parse(#"{"layers": [{"layer": 2, "routing_weights": {"expert_64": 1}}]}"#)) {
            XCTAssertTrue("\($0)".contains("expert_64") && "\($0)".contains("layer 2"), "\($0)")
        }
    }

    func testRejectsBadKeysAndValues() {
        for bad in [#"{"expert_x": 1}"#, #"{"expert_1": -0.5}"#, #"{"expert_1": 0}"#, #"{"e1": 1}"#] {
            XCTAssertThrowsError(try parse(#"{"layers": [{"layer": 0, "routing_weights": \#(bad)}]}"#)) {
                XCTAssertTrue("\($0)".contains("layer 0"), "\($0)")
            }
        }
    }
}
