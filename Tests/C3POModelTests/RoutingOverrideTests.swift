import C3POModel
import XCTest

final class RoutingOverrideTests: XCTestCase {
    func testFirstLayerIsWhereTailReevaluationStarts() {
        XCTAssertNil(RoutingOverride().firstLayer)
        XCTAssertEqual(RoutingOverride(layers: [14: [1, 0], 11: [0, 1], 15: [0.5, 0.5]]).firstLayer, 11)
    }
}
