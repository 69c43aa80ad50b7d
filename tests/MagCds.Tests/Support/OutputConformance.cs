using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Hl7.Fhir.Model;
using Hl7.Fhir.Serialization;
using MagCds.Core.Evaluation;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace MagCds.Tests.Support;

/// <summary>
/// Checks every RiskAssessment and DetectedIssue a service under test emits against the MagCds profiles: in every
/// response it sends (FHIR REST answers, CDS Hooks suggestions) and every request it makes (worker write-back). A
/// response with a non-conforming output is replaced by a 500 naming the problems, and a write-back is refused
/// before it reaches the server, so the test that produced it fails; <see cref="Failures"/> keeps the details.
/// </summary>
public sealed class OutputConformance
{
    private readonly ConcurrentDictionary<string, bool> _seen = new();
    private readonly ConcurrentQueue<string> _failures = new();
    private int _checked;

    public IReadOnlyCollection<string> Failures => _failures.ToArray();
    public int Checked => _checked;

    /// <summary>The problems of the outputs in a body (FHIR JSON or XML, or CDS Hooks JSON); empty when all conform.</summary>
    public IReadOnlyList<string> Check(string body, string? mediaType, Evaluator evaluator, string where)
    {
        var problems = new List<string>();
        foreach (var output in OutputsIn(body, mediaType, where, problems))
        {
            string json = output.ToJson();
            if (!_seen.TryAdd(Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(json))), true)) continue;
            Interlocked.Increment(ref _checked);
            var found = FhirValidation.Problems(output, FhirValidation.For(evaluator), evaluator.Canonical);
            if (found.Count > 0) problems.Add($"{where}: {output.TypeName}/{output.Id} does not conform:\n{FhirValidation.Describe(found)}");
        }
        foreach (var p in problems) _failures.Enqueue(p);
        return problems;
    }

    /// <summary>
    /// The outputs in a body, parsed strictly (an element MagCds made up would be an error, not dropped). A body that
    /// names an output but does not parse is a problem itself, not "nothing to check".
    /// </summary>
    private static IEnumerable<Resource> OutputsIn(string body, string? mediaType, string where, List<string> problems)
    {
        if (string.IsNullOrWhiteSpace(body) || mediaType is null) return [];
        try
        {
            if (mediaType.Contains("xml", StringComparison.OrdinalIgnoreCase))
                return body.Contains("<RiskAssessment", StringComparison.Ordinal) || body.Contains("<DetectedIssue", StringComparison.Ordinal)
                    ? FhirValidation.Outputs(new FhirXmlDeserializer().DeserializeResource(body)).ToList() : [];
            if (!mediaType.Contains("json", StringComparison.OrdinalIgnoreCase)
                || !(body.Contains("\"RiskAssessment\"", StringComparison.Ordinal) || body.Contains("\"DetectedIssue\"", StringComparison.Ordinal))) return [];
            using var doc = JsonDocument.Parse(body);
            if (doc.RootElement.TryGetProperty("resourceType", out _))
                return FhirValidation.Outputs(new FhirJsonDeserializer().DeserializeResource(body)).ToList();
            // CDS Hooks: cards[].suggestions[].actions[].resource
            var list = new List<Resource>();
            if (doc.RootElement.TryGetProperty("cards", out var cards))
                foreach (var card in cards.EnumerateArray())
                    if (card.TryGetProperty("suggestions", out var suggestions))
                        foreach (var s in suggestions.EnumerateArray())
                            foreach (var a in s.GetProperty("actions").EnumerateArray())
                                if (a.TryGetProperty("resource", out var r))
                                    list.AddRange(FhirValidation.Outputs(new FhirJsonDeserializer().DeserializeResource(r.GetRawText())));
            return list;
        }
        catch (Exception e) when (e is JsonException or DeserializationFailedException or FormatException or InvalidOperationException or System.Xml.XmlException)
        {
            problems.Add($"{where}: a body with RiskAssessment or DetectedIssue outputs that does not parse as FHIR: {e.Message}");
            return [];
        }
    }

    /// <summary>Wraps the service's pipeline: buffers each response and checks it before it goes out.</summary>
    public sealed class StartupFilter(OutputConformance conformance) : IStartupFilter
    {
        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            app.Use(async (http, call) =>
            {
                var original = http.Response.Body;
                using var buffer = new MemoryStream();
                http.Response.Body = buffer;
                try { await call(http); }
                finally { http.Response.Body = original; }

                var problems = conformance.Check(Encoding.UTF8.GetString(buffer.ToArray()), http.Response.ContentType,
                    http.RequestServices.GetRequiredService<Evaluator>(), $"{http.Request.Method} {http.Request.Path}");
                if (problems.Count > 0 && !http.Response.HasStarted)
                {
                    http.Response.StatusCode = StatusCodes.Status500InternalServerError;
                    http.Response.ContentType = "text/plain";
                    http.Response.ContentLength = null;
                    await http.Response.WriteAsync("MagCds output does not conform to its profiles:\n" + string.Join("\n", problems));
                    return;
                }
                buffer.Position = 0;
                await buffer.CopyToAsync(original);
            });
            next(app);
        };
    }

    /// <summary>On the service's outgoing HttpClients: checks FHIR bodies it writes; a non-conforming one is refused with 422.</summary>
    public sealed class WriteCheck(OutputConformance conformance, IServiceProvider services) : DelegatingHandler
    {
        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken ct)
        {
            if (request.Content is { } content && request.Method != HttpMethod.Get)
            {
                await content.LoadIntoBufferAsync(ct);
                var problems = conformance.Check(await content.ReadAsStringAsync(ct), content.Headers.ContentType?.MediaType,
                    services.GetRequiredService<Evaluator>(), $"{request.Method} {request.RequestUri?.AbsolutePath}");
                if (problems.Count > 0)
                    return new HttpResponseMessage(System.Net.HttpStatusCode.UnprocessableEntity)
                    {
                        RequestMessage = request,
                        Content = new StringContent(string.Join("\n", problems)),
                    };
            }
            return await base.SendAsync(request, ct);
        }
    }
}
