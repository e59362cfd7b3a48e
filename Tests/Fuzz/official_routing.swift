// libFuzzer target: the JSON scanner and the rules of the official routing form, on untrusted
// bytes (an override file, a record's last_token_routing). Built by Scripts/fuzz.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Data(bytes: data, count: size)
    _ = try? OfficialRouting.read(document: bytes, layerCount: 16, experts: 64)
    _ = try? JSONScanner.parse(bytes)
    return 0
}
