using Hl7.Fhir.Model;

namespace MagCds.Core.Evaluation;

/// <summary>A MagCds outcome code: the machine-readable reason an engine can route on, with its FHIR IssueType.</summary>
public sealed record OutcomeCode(string Code, string Display, OperationOutcome.IssueType Type);

/// <summary>
/// Every code MagCds puts into OperationOutcome.issue.details (system <see cref="CanonicalUrls.OutcomeSystem"/>).
/// The HTTP status that goes with each is decided by the door, not here.
/// </summary>
public static class OutcomeCodes
{
    public static readonly OutcomeCode Evaluated = new("evaluated", "Summary of what was evaluated", OperationOutcome.IssueType.Informational);
    public static readonly OutcomeCode NotAntiMag = new("not-anti-mag", "Not an anti-MAG IgM Observation", OperationOutcome.IssueType.NotSupported);
    public static readonly OutcomeCode MissingValue = new("missing-value", "The Observation carries no value", OperationOutcome.IssueType.Required);
    public static readonly OutcomeCode MissingSubject = new("missing-subject", "The Observation names no subject", OperationOutcome.IssueType.Required);
    public static readonly OutcomeCode AboutFocus = new("about-focus", "The Observation is about its focus, not its subject", OperationOutcome.IssueType.NotSupported);
    public static readonly OutcomeCode StatusNotEvaluated = new("status-not-evaluated", "Observation status is not evaluated", OperationOutcome.IssueType.BusinessRule);
    public static readonly OutcomeCode HistoryOtherPatient = new("history-other-patient", "Earlier result of another patient ignored", OperationOutcome.IssueType.BusinessRule);
    public static readonly OutcomeCode Preliminary = new("preliminary-result", "Preliminary result evaluated", OperationOutcome.IssueType.Informational);
    public static readonly OutcomeCode Retracted = new("retracted", "Entered-in-error: earlier outputs retracted", OperationOutcome.IssueType.Informational);
    public static readonly OutcomeCode Deleted = new("deleted", "Deleted from its server: earlier outputs retracted", OperationOutcome.IssueType.Informational);
    public static readonly OutcomeCode CannotInterpret = new("cannot-interpret", "The result cannot be interpreted safely", OperationOutcome.IssueType.Informational);
    public static readonly OutcomeCode NoIdentity = new("no-identity", "The Observation has no id, identifier or reference", OperationOutcome.IssueType.Informational);
    public static readonly OutcomeCode UnknownModifier = new("unknown-modifier", "The Observation carries a modifier MagCds does not know", OperationOutcome.IssueType.NotSupported);
    public static readonly OutcomeCode SupersededInRequest = new("superseded-in-request", "Another version of this Observation in the request is used instead", OperationOutcome.IssueType.BusinessRule);

    // Request-level codes, raised by the doors.
    public static readonly OutcomeCode Unparseable = new("unparseable", "The body is not valid FHIR", OperationOutcome.IssueType.Structure);
    public static readonly OutcomeCode UnparseableEntry = new("unparseable-entry", "A Bundle entry is not valid FHIR", OperationOutcome.IssueType.Structure);
    public static readonly OutcomeCode UnsupportedResource = new("unsupported-resource", "This resource type is not accepted here", OperationOutcome.IssueType.NotSupported);
    public static readonly OutcomeCode InvalidParameters = new("invalid-parameters", "The Parameters resource does not match the operation", OperationOutcome.IssueType.Invalid);
    public static readonly OutcomeCode InvalidQuery = new("invalid-query", "A query or route parameter has a value the route does not take", OperationOutcome.IssueType.Value);
    public static readonly OutcomeCode UnsupportedMediaType = new("unsupported-media-type", "Content-Type is not FHIR JSON or XML", OperationOutcome.IssueType.NotSupported);
    public static readonly OutcomeCode NotAcceptable = new("not-acceptable", "No acceptable response format", OperationOutcome.IssueType.NotSupported);
    public static readonly OutcomeCode PayloadTooLarge = new("payload-too-large", "The body is larger than the configured limit", OperationOutcome.IssueType.TooLong);
    public static readonly OutcomeCode NotFound = new("not-found", "No such resource or route", OperationOutcome.IssueType.NotFound);
    public static readonly OutcomeCode MethodNotAllowed = new("method-not-allowed", "The route does not take this HTTP method", OperationOutcome.IssueType.NotSupported);
    public static readonly OutcomeCode NothingEvaluated = new("nothing-evaluated", "No input could be evaluated", OperationOutcome.IssueType.Processing);
    public static readonly OutcomeCode InvalidCdsRequest = new("invalid-cds-request", "The CDS Hooks request is not valid", OperationOutcome.IssueType.Invalid);
    public static readonly OutcomeCode InvalidFeedback = new("invalid-feedback", "The CDS Hooks feedback is not valid", OperationOutcome.IssueType.Invalid);
    public static readonly OutcomeCode DataUnavailable = new("data-unavailable", "The patient's results were neither prefetched nor obtainable", OperationOutcome.IssueType.Incomplete);
    public static readonly OutcomeCode NotificationQueued = new("notification-queued", "The notification is stored and will be processed", OperationOutcome.IssueType.Informational);
    public static readonly OutcomeCode Unauthorized = new("unauthorized", "Missing or wrong credentials", OperationOutcome.IssueType.Login);
    public static readonly OutcomeCode CertificateRequired = new("certificate-required", "A client certificate MagCds accepts is required", OperationOutcome.IssueType.Login);
    public static readonly OutcomeCode Forbidden = new("forbidden", "This endpoint is not enabled or not allowed", OperationOutcome.IssueType.Forbidden);
    public static readonly OutcomeCode TooManyRequests = new("too-many-requests", "The client is over its request rate limit", OperationOutcome.IssueType.Throttled);
    public static readonly OutcomeCode Timeout = new("timeout", "The request took longer than the configured limit", OperationOutcome.IssueType.Timeout);
    public static readonly OutcomeCode StoreUnavailable = new("store-unavailable", "MagCds's store did not answer; the request was not completed", OperationOutcome.IssueType.Transient);
    public static readonly OutcomeCode InternalError = new("internal-error", "Unexpected error", OperationOutcome.IssueType.Exception);

    /// <summary>Every code above, in declaration order (the published CodeSystem lists exactly these).</summary>
    public static IReadOnlyList<OutcomeCode> All { get; } = typeof(OutcomeCodes).GetFields(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static)
        .Where(f => f.FieldType == typeof(OutcomeCode)).Select(f => (OutcomeCode)f.GetValue(null)!).ToList();
}
