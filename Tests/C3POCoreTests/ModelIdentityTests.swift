import C3POCore
import Foundation
import XCTest

final class ModelIdentityTests: XCTestCase {
    func testManifestKeysAreSnakeCase() throws {
        let id = ModelIdentity(id: "m", configSHA256: "ab", layers: 4, experts: 16, topK: 2)
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(id)) as? [String: Any]
        XCTAssertEqual(json?["config_sha256"] as? String, "ab")
        XCTAssertEqual(json?["top_k"] as? Int, 2)
        XCTAssertEqual(try JSONDecoder().decode(ModelIdentity.self, from: JSONEncoder().encode(id)), id)
    }
}
