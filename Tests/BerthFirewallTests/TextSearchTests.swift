import Testing
@testable import BerthFirewall

@Suite("containsText (substring search without _StringProcessing)")
struct SubstringTests {
    @Test("finds text at the start, middle and end; not across a mismatch; the empty needle is everywhere",
          arguments: [
              ("No such file or directory", "No such", true),
              ("list table: No such file or directory", "file or", true),
              ("abc", "abc", true),
              ("abcabd", "abd", true),
              ("aab", "ab", true),
              ("ab", "abc", false),
              ("abc", "acb", false),
              ("", "", true),
              ("x", "", true),
              ("", "x", false),
              ("grüße", "üß", true),
              ("grüße", "ue", false),
          ])
    func search(hay: String, needle: String, expected: Bool) {
        #expect(hay.containsText(needle) == expected)
        #expect(hay[...].containsText(needle[...]) == expected)
    }
}
