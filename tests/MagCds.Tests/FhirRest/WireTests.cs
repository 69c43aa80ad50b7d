using System.Text;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using MagCds.Core.Evaluation;
using MagCds.Service.FhirRest;
using MagCds.Service.Hosting;
using MagCds.Tests.Support;

namespace MagCds.Tests.FhirRest;

/// <summary>The streamed writer produces exactly what the Firely serializer produces for the whole resource.</summary>
public class WireTests
{
    private static Parameters LargeAnswer()
    {
        var answer = MagEvaluateOperation.Start(EvaluationRun.Of(CoreUnderTest.EvaluateFile("Bundle-two-patients.json")), [], new EvaluationSummary("test", ""), MagCds.Core.CanonicalUrls.Default);
        var p = (Parameters)answer.ToResource();
        // Make it span several 64 KB chunks.
        for (int i = 0; i < 12; i++) p.Parameter.AddRange(p.Parameter.Take(5).Select(x => (Parameters.ParameterComponent)x.DeepCopy()));
        return p;
    }

    private static async Task<string> Streamed(Resource r, FhirFormat f)
    {
        using var ms = new MemoryStream();
        await FhirWire.WriteAsync(r, f, ms, CancellationToken.None);
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    [Test]
    public async Task Streamed_JSON_is_byte_identical_to_the_serializer_output()
    {
        var p = LargeAnswer();
        string streamed = await Streamed(p, FhirFormat.Json);
        Assert.That(streamed.Length, Is.GreaterThan(3 * 32 * 1024), "the answer spans several chunks");
        Assert.That(streamed, Is.EqualTo(p.ToJson()));
    }

    [Test]
    public async Task Streamed_XML_parses_back_to_the_same_resource()
    {
        var p = LargeAnswer();
        string streamed = await Streamed(p, FhirFormat.Xml);
        var back = new FhirXmlDeserializer().Deserialize<Parameters>(streamed);
        Assert.That(back.IsExactly(p), Is.True);
    }

    [TestCase(FhirFormat.Json)]
    [TestCase(FhirFormat.Xml)]
    public async Task Other_resources_are_written_whole(FhirFormat f)
    {
        var oo = new OperationOutcome { Id = "x", Issue = [new OperationOutcome.IssueComponent { Severity = OperationOutcome.IssueSeverity.Error, Code = OperationOutcome.IssueType.Invalid }] };
        string streamed = await Streamed(oo, f);
        Assert.That(streamed, Is.EqualTo(f == FhirFormat.Json ? oo.ToJson() : oo.ToXml()));
    }

    /// <summary>
    /// An answer whose caller goes away mid-stream: what was produced until then may have reached it, so the summary
    /// (log line and audit entries) is still written, for the parts produced, not for the rest.
    /// </summary>
    [Test]
    public async System.Threading.Tasks.Task The_summary_is_written_when_the_caller_goes_away_mid_answer()
    {
        int produced = 0;
        IEnumerable<Parameters.ParameterComponent> Parts()
        {
            for (int i = 0; i < 1000; i++)
            {
                produced++;
                yield return new Parameters.ParameterComponent { Name = "outcome", Resource = new OperationOutcome { Id = "o" + i } };
            }
        }
        int? summarised = null;
        var result = new FhirResult(Parts(), FhirFormat.Json, () => summarised = produced);
        var http = new Microsoft.AspNetCore.Http.DefaultHttpContext();
        http.Response.Body = new GoneAfter(64 * 1024);
        await Assert.ThatAsync(() => result.WriteAsync(http, CancellationToken.None), Throws.InstanceOf<IOException>());
        Assert.That(summarised, Is.Not.Null, "the summary was written");
        Assert.That(summarised, Is.GreaterThan(0).And.LessThan(1000), "for the parts produced before the connection went");
    }

    /// <summary>A response body whose connection goes after <paramref name="bytes"/> bytes.</summary>
    private sealed class GoneAfter(int bytes) : MemoryStream
    {
        public override void Write(byte[] buffer, int offset, int count) { if (Length + count > bytes) throw new IOException("connection reset"); base.Write(buffer, offset, count); }
        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken ct) { Write(buffer, offset, count); return Task.CompletedTask; }
        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct = default) { Write(buffer.ToArray(), 0, buffer.Length); return ValueTask.CompletedTask; }
    }
}
