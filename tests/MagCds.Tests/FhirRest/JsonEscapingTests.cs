using System.Buffers;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using MagCds.Service.FhirRest;

namespace MagCds.Tests.FhirRest;

/// <summary>
/// <see cref="JsonEscaping"/> writes exactly what the runtime's relaxed encoder writes, for every UTF-16 code unit, in
/// every position, through <see cref="Utf8JsonWriter"/> (how the answers are written) and through the encoder's own API
/// with destinations too small and input cut in the middle of a surrogate pair.
/// </summary>
public class JsonEscapingTests
{
    private static string Written(string text, JavaScriptEncoder encoder)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = encoder })) w.WriteStringValue(text);
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static void AssertSameAsRelaxed(string text, string what)
    {
        string expected = Written(text, JavaScriptEncoder.UnsafeRelaxedJsonEscaping);
        string actual = Written(text, JsonEscaping.Instance);
        if (actual != expected) Assert.Fail($"{what}: expected {expected}, got {actual}");
    }

    [Test]
    public void Every_UTF16_code_unit_is_written_as_the_relaxed_encoder_writes_it_alone_and_inside_text()
    {
        int escaped = 0;
        for (int c = 0; c <= 0xFFFF; c++)
        {
            string ch = ((char)c).ToString();
            AssertSameAsRelaxed(ch, $"U+{c:X4} alone");
            AssertSameAsRelaxed("plain text before " + ch + " and after, long enough for the vectorised search", $"U+{c:X4} inside text");
            AssertSameAsRelaxed(ch + ch + "ab" + ch, $"U+{c:X4} repeated");
            if (Written(ch, JavaScriptEncoder.UnsafeRelaxedJsonEscaping).Contains('\\')) escaped++;
        }
        // The comparison is not empty: control characters, quotation mark, reverse solidus, surrogates,
        // non-characters and unassigned code points are escaped by both.
        Assert.That(escaped, Is.GreaterThan(2_000));
    }

    [Test]
    public void Surrogate_pairs_and_lone_surrogates_are_written_as_the_relaxed_encoder_writes_them()
    {
        string pair = char.ConvertFromUtf32(0x1F600); // outside the BMP: the relaxed encoder escapes it as a pair
        foreach (var (text, what) in new[]
                 {
                     ("a" + pair + "b", "a pair between plain characters"),
                     (pair + pair, "two pairs"),
                     ("x\n" + pair + "\"y", "a pair between escaped characters"),
                     ("a\uD83Db", "a lone high surrogate"),
                     ("a\uDE00b", "a lone low surrogate"),
                     ("abc\uD83D", "a high surrogate at the end"),
                     ("\uDE00\uD83D", "low then high"),
                     ("é\uD83D\uDE00à", "a pair between accented letters"),
                 })
            AssertSameAsRelaxed(text, what);
    }

    [Test]
    public void Random_texts_are_written_as_the_relaxed_encoder_writes_them()
    {
        var random = new Random(20261128);
        string[] pieces = ["Matà ", "\n\n", "\"", "\\", "<b>", "'", "BTU ", "≥ 10,000", "\u2028", "\u0001", "\uD83D\uDE00", "\uD83D", "\uFFFE", "plain words "];
        for (int i = 0; i < 5_000; i++)
        {
            var sb = new StringBuilder();
            int n = random.Next(0, 40);
            for (int j = 0; j < n; j++) sb.Append(pieces[random.Next(pieces.Length)]);
            AssertSameAsRelaxed(sb.ToString(), $"random text {i}");
        }
    }

    [Test]
    public void Encoding_into_small_destinations_and_cut_input_gives_the_relaxed_encoders_result_piece_by_piece()
    {
        string text = "Result: 25000 BTU\n\nMatà 2019 \"quoted\" \\ " + char.ConvertFromUtf32(0x1F600) + " end of the text";
        string expected = Written(text, JavaScriptEncoder.UnsafeRelaxedJsonEscaping).Trim('"');
        foreach (int size in new[] { 12, 13, 17, 29, 64 }) // 12: an escaped surrogate pair, the longest escape
        {
            var output = new StringBuilder();
            var source = text.AsSpan();
            var destination = new char[size];
            while (!source.IsEmpty)
            {
                var status = JsonEscaping.Instance.Encode(source, destination, out int read, out int written, isFinalBlock: true);
                Assert.That(read + written, Is.GreaterThan(0), $"destination {size}: progress");
                output.Append(destination, 0, written);
                source = source[read..];
                Assert.That(status, Is.EqualTo(source.IsEmpty ? System.Buffers.OperationStatus.Done : System.Buffers.OperationStatus.DestinationTooSmall), $"destination {size}");
            }
            Assert.That(output.ToString(), Is.EqualTo(expected), $"destination {size}");
        }

        // Input that ends in a high surrogate when more may follow: the surrogate waits for the rest.
        var buffer = new char[64];
        var first = JsonEscaping.Instance.Encode("ab\uD83D", buffer, out int consumed, out int produced, isFinalBlock: false);
        Assert.That((first, consumed, new string(buffer, 0, produced)), Is.EqualTo((System.Buffers.OperationStatus.NeedMoreData, 2, "ab")));
    }
}
