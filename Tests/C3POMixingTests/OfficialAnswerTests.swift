import C3POMixing
import Foundation
import XCTest

/// The published code's answer-letter rules, against that code itself run on crafted texts
/// (Tests/Fixtures/core/official-answers.json, Scripts/make-answer-fixtures).
final class OfficialAnswerTests: XCTestCase {
    func testEveryCaseAsThePublishedFunctionReadsIt() throws {
        struct Case: Decodable { var text: String; var answer: String }
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/core/official-answers.json")
        let cases = try JSONDecoder().decode([Case].self, from: Data(contentsOf: url))
        XCTAssertGreaterThan(cases.count, 20)
        for c in cases { XCTAssertEqual(OfficialAnswer.extract(c.text), c.answer, c.text.debugDescription) }
    }
}
