// libFuzzer target: tokenizer.json (both kinds: byte-level BPE, SentencePiece BPE) loaded from
// untrusted bytes, then used to encode a fixed text. Built by Scripts/fuzz.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    if let t = try? TokenizerLoader.load(bytes, url: URL(fileURLWithPath: "tokenizer.json")) {
        _ = t.encode("Question: Which gas do plants absorb? A. oxygen\nAnswer: é 東京 🙂")
        _ = t.continuationIDs("A")
    }
    return 0
}

/// ModelError's message names the supported model types; the loader itself is not part of this target.
enum ModelLoader { static let supportedTypes: [String] = [] }
