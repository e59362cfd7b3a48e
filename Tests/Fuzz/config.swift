// libFuzzer target: `config.json` of every family the engine runs, from untrusted bytes, loaded
// beside a real small checkpoint and tokenizer of that family (the test fixtures) the way
// `ModelLoader.load` loads a user's folder: the config decoded and checked, every tensor it
// implies looked up and its shape checked (shards and their index too), and, when that all holds, a 3-token prefill run.
// The first byte chooses the checkpoint (input % 6: OLMoE, OLMoE with GQA, Qwen2-MoE,
// Qwen3-MoE, Mixtral, DeepSeekMoE); the rest is config.json. Run from the repository root
// (Scripts/fuzz does). Built by Scripts/fuzz.
import Foundation

private let fixtures = ["Tests/Fixtures/moe/olmoe-f32", "Tests/Fixtures/moe/gqa-bf16", "Tests/Fixtures/families/qwen2_moe",
                        "Tests/Fixtures/families/qwen3_moe", "Tests/Fixtures/families/mixtral", "Tests/Fixtures/families/deepseek"]

/// One folder per fixture: its checkpoint and tokenizer linked, config.json written per input.
private let folders: [URL] = {
    let fm = FileManager.default
    let root = URL(fileURLWithPath: fm.currentDirectoryPath)
    let base = fm.temporaryDirectory.appendingPathComponent("c3po-fuzz-config-\(getpid())")
    return fixtures.enumerated().map { i, f in
        let dir = base.appendingPathComponent("\(i)")
        try? fm.createDirectory(at: dir, withIntermediateDirectories: true)
        let fixture = root.appendingPathComponent(f)
        guard let names = try? fm.contentsOfDirectory(atPath: fixture.path) else { fatalError("fuzz config: no \(fixture.path) (run from the repository root)") }
        // The shards, their index, the tokenizer and generation_config.json; not the goldens.
        for name in names where name != "config.json" && !name.hasPrefix("golden") && !name.hasPrefix("gradient") {
            try? fm.createSymbolicLink(at: dir.appendingPathComponent(name), withDestinationURL: fixture.appendingPathComponent(name))
        }
        return dir
    }
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let dir = folders[Int(data[0]) % folders.count]
    guard (try? Data(bytes: data + 1, count: size - 1).write(to: dir.appendingPathComponent("config.json"))) != nil else { return 0 }
    guard let model = try? ModelLoader.load(directory: dir) else { return 0 }
    _ = try? model.prefill([1, 2, 3], override: nil)
    return 0
}
