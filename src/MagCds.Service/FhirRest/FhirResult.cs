using Hl7.Fhir.Model;

namespace MagCds.Service.FhirRest;

/// <summary>
/// Writes a FHIR answer in the negotiated format: a resource, or the parts of a Parameters produced while they are
/// written (see <see cref="FhirWire.WriteParametersAsync"/>). <c>completed</c> runs once the body is written, or once
/// writing stopped (the caller went away, the time ran out): what was produced until then is logged and audited.
/// </summary>
public sealed class FhirResult : IResult
{
    private readonly Resource? _resource;
    private readonly IEnumerable<Parameters.ParameterComponent>? _parts;
    private readonly FhirFormat _format;
    private readonly int _status;
    private readonly Action? _completed;

    public FhirResult(Resource resource, FhirFormat format, int status = StatusCodes.Status200OK, Action? completed = null)
    {
        _resource = resource;
        _format = format;
        _status = status;
        _completed = completed;
    }

    public FhirResult(IEnumerable<Parameters.ParameterComponent> parts, FhirFormat format, Action? completed = null)
    {
        _parts = parts;
        _format = format;
        _status = StatusCodes.Status200OK;
        _completed = completed;
    }

    public Task ExecuteAsync(HttpContext http) => WriteAsync(http, http.RequestAborted);

    /// <summary>Writes the answer, stopping when <paramref name="ct"/> fires (a timeout answer writes after the request's own token has).</summary>
    public async Task WriteAsync(HttpContext http, CancellationToken ct)
    {
        http.Response.StatusCode = _status;
        http.Response.ContentType = FhirWire.MediaType(_format) + "; charset=utf-8";
        try
        {
            if (_parts is not null) await FhirWire.WriteParametersAsync(_parts, _format, http.Response.Body, ct);
            else await FhirWire.WriteAsync(_resource!, _format, http.Response.Body, ct);
        }
        finally
        {
            // Outputs streamed to a caller that went away mid-answer may have reached it: they are audited too.
            _completed?.Invoke();
        }
    }
}
