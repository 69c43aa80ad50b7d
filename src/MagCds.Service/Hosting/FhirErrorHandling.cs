using Hl7.Fhir.Model;
using MagCds.Core.Evaluation;
using MagCds.Service.FhirRest;
using Microsoft.AspNetCore.Diagnostics;

namespace MagCds.Service.Hosting;

/// <summary>
/// The one place that turns failures into answers: a refused request becomes its OperationOutcome and status; a
/// store that does not answer (a CDS Hooks call's token check, feedback, a notification, an admin call) a 503 the
/// caller may retry; anything unexpected (a store error that is a defect included) a 500 OperationOutcome with the
/// correlation id and no exception details.
/// </summary>
public sealed partial class FhirErrorHandler(ILogger<FhirErrorHandler> logger) : IExceptionHandler
{
    /// <summary>Middleware options: every exception is answered by this handler (registered in DI), none falls through.</summary>
    public static ExceptionHandlerOptions Options { get; } = new() { StatusCodeSelector = _ => StatusCodes.Status500InternalServerError, ExceptionHandler = _ => Task.CompletedTask };

    public async ValueTask<bool> TryHandleAsync(HttpContext http, Exception exception, CancellationToken ct)
    {
        var code = CodeOf(exception);
        bool storeDown = code == OutcomeCodes.StoreUnavailable;
        (int status, OperationOutcome outcome) = exception switch
        {
            FhirRequestException e => (e.Status, Outcomes.Error(http, code, e.Message)),
            // Kestrel's own refusals keep their status; CodeOf has said which kind they are.
            BadHttpRequestException b => (b.StatusCode, Outcomes.Error(http, code,
                code == OutcomeCodes.PayloadTooLarge ? "The body is larger than the server accepts."
                : code == OutcomeCodes.Timeout ? "The request did not arrive in time (too slow a body); nothing was done, send it again."
                : code == OutcomeCodes.InvalidQuery ? "A query or route parameter has a value of the wrong kind or out of range (a number where one is expected); nothing was done."
                : "The request could not be read.")),
            OperationCanceledException when http.RequestAborted.IsCancellationRequested => (499, new OperationOutcome()),
            _ when storeDown => (StatusCodes.Status503ServiceUnavailable,
                Outcomes.Error(http, code,
                    $"MagCds's store did not answer, so the request was not completed. Send it again in {StoreRetrySeconds} s (a CDS Hooks call with a new token: each token is accepted once).")),
            _ => (StatusCodes.Status500InternalServerError,
                Outcomes.Error(http, code, "MagCds could not complete the request; quote the id of this OperationOutcome to support.")),
        };
        if (storeDown)
        {
            StoreFailed(logger, exception.GetType().FullName ?? "", exception.StackTrace ?? "");
            http.Response.Headers.RetryAfter = StoreRetrySeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        else if (status >= 500) Unexpected(logger, exception.GetType().FullName ?? "", exception.StackTrace ?? "");
        else Refused(logger, status, outcome.Issue.FirstOrDefault()?.Details?.Coding.FirstOrDefault()?.Code ?? "");

        // Which content codings a 415 would have taken (RFC 9110 §15.5.16): none.
        if (status == StatusCodes.Status415UnsupportedMediaType) http.Response.Headers.AcceptEncoding = "identity";
        await new FhirResult(outcome, ErrorFormat(http.Request), status).ExecuteAsync(http);
        return true;
    }

    /// <summary>
    /// The outcome code a failure is answered with; the audit of admin calls records the same code, so the two cannot
    /// disagree. A store out of reach (connection, time-out, shutdown, busy) is store-unavailable; any other store
    /// error is a defect.
    /// </summary>
    public static OutcomeCode CodeOf(Exception exception) => exception switch
    {
        FhirRequestException e => e.Code,
        BadHttpRequestException { StatusCode: StatusCodes.Status413PayloadTooLarge } => OutcomeCodes.PayloadTooLarge,
        // Kestrel's minimum body data rate: a retryable time-out, not a body that cannot be read.
        BadHttpRequestException { StatusCode: StatusCodes.Status408RequestTimeout } => OutcomeCodes.Timeout,
        // The framework's own type (Kestrel's refusals of a body are a subclass of it): a parameter that did not bind.
        BadHttpRequestException b when b.GetType() == typeof(BadHttpRequestException) => OutcomeCodes.InvalidQuery,
        BadHttpRequestException => OutcomeCodes.Unparseable,
        System.Data.Common.DbException db when Storage.Database.IsUnavailable(db) => OutcomeCodes.StoreUnavailable,
        _ => OutcomeCodes.InternalError,
    };

    /// <summary>The caller's preferred format when it can be told, else JSON: an error answer must never fail itself.</summary>
    public static FhirFormat ErrorFormat(HttpRequest request)
    {
        try { return FhirWire.ResponseFormat(request, FhirWire.FromMediaType(request.ContentType)); }
        catch (FhirRequestException) { return FhirFormat.Json; }
    }

    /// <summary>What a 503 for a store that did not answer asks the caller to wait (the worker retries its store as often).</summary>
    private const int StoreRetrySeconds = 5;

    // Only the type and stack trace are logged: an exception message may quote the input (PHI).
    // The client sees the generic OperationOutcome only.
    [LoggerMessage(Level = LogLevel.Error, Message = "Unexpected failure {ExceptionType} at {StackTrace}")]
    private static partial void Unexpected(ILogger logger, string exceptionType, string stackTrace);

    [LoggerMessage(Level = LogLevel.Error, Message = "Store failure {ExceptionType} at {StackTrace}: answered 503 store-unavailable")]
    private static partial void StoreFailed(ILogger logger, string exceptionType, string stackTrace);

    [LoggerMessage(Level = LogLevel.Information, Message = "Request refused with {StatusCode} {OutcomeCode}")]
    private static partial void Refused(ILogger logger, int statusCode, string outcomeCode);
}
