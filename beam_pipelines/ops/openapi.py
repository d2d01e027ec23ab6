"""The ops API's OpenAPI 3.0 document (served at ``/openapi.json``; schemathesis tests the
service against it)."""

from __future__ import annotations

from beam_pipelines.ops.queries import DEAD_LETTER_FILTERS
from beam_pipelines.ops.queries import MAX_LIMIT
from beam_pipelines.ops.queries import MAX_OFFSET
from beam_pipelines.ops.queries import NAMED
from beam_pipelines.ops.replay import MAX_REPLAY

__all__ = ['spec']

_ERROR = {
    'description': 'An error, as one line.',
    'content': {
        'application/json': {
            'schema': {
                'type': 'object',
                'required': ['error'],
                'properties': {'error': {'type': 'string'}},
            }
        }
    },
}
_OBJECT = {'type': 'object', 'additionalProperties': True}
_NULLABLE_STR = {'type': 'string', 'nullable': True}
# Text parameters: no NUL (PostgreSQL text cannot hold one), at most 200 characters.
_TEXT = {'type': 'string', 'maxLength': 200, 'pattern': '^[^\\u0000]*$'}


def _json(schema: dict, description: str = 'OK') -> dict:
    return {'description': description, 'content': {'application/json': {'schema': schema}}}


def _page_params() -> list[dict]:
    return [
        {
            'name': 'limit',
            'in': 'query',
            'schema': {'type': 'integer', 'minimum': 1, 'maximum': MAX_LIMIT, 'default': 100},
        },
        {
            'name': 'offset',
            'in': 'query',
            'schema': {'type': 'integer', 'minimum': 0, 'maximum': MAX_OFFSET, 'default': 0},
        },
    ]


def _time_params() -> list[dict]:
    return [
        {'name': n, 'in': 'query', 'schema': {'type': 'string', 'format': 'date-time'}}
        for n in ('since', 'until')
    ]


_RUN = {
    'type': 'object',
    'required': ['id', 'path', 'counts', 'balanced'],
    'properties': {
        'id': {'type': 'string'},
        'path': {'type': 'string'},
        'pipeline': _NULLABLE_STR,
        'input': _NULLABLE_STR,
        'finished_at': _NULLABLE_STR,
        'balanced': {'type': 'boolean'},
        'counts': {'type': 'object', 'additionalProperties': {'type': 'integer'}},
        'report': _NULLABLE_STR,
    },
}
_DEAD_LETTER = {
    'type': 'object',
    'required': ['id', 'stage', 'error_type', 'error_message', 'pipeline', 'processing_time'],
    'properties': {
        'id': {'type': 'string'},
        'stage': {'type': 'string'},
        'error_type': {'type': 'string'},
        'error_message': {'type': 'string'},
        'payload': _NULLABLE_STR,
        'payload_encoding': {'type': 'string'},
        'payload_format': {'type': 'string'},
        'source': {'type': 'object', 'nullable': True, 'additionalProperties': True},
        'pipeline': {'type': 'string'},
        'processing_time': {'type': 'string'},
        'event_time': _NULLABLE_STR,
    },
}


def _query_path(name: str, query) -> dict:
    params = []
    for pname, ptype, required in query.params:
        schema = {
            int: {'type': 'integer', 'minimum': 1, 'maximum': MAX_LIMIT},
            str: {**_TEXT, 'minLength': 1},
        }.get(ptype, {'type': 'string', 'format': 'date-time'})
        params.append({'name': pname, 'in': 'query', 'required': required, 'schema': schema})
    return {
        'get': {
            'summary': query.description,
            'operationId': f'query_{name}',
            'parameters': params,
            'responses': {
                '200': _json(
                    {
                        'type': 'object',
                        'required': ['rows'],
                        'properties': {'rows': {'type': 'array', 'items': _OBJECT}},
                    }
                ),
                '400': _ERROR,
                '401': _ERROR,
                '503': _ERROR,
            },
        }
    }


def spec() -> dict:
    auth = [{'bearer': []}]
    paths = {
        '/health': {
            'get': {
                'summary': 'Liveness and the warehouse connection (no credentials needed).',
                'operationId': 'health',
                'security': [],
                'responses': {
                    '200': _json(
                        {
                            'type': 'object',
                            'required': ['status'],
                            'properties': {
                                'status': {'type': 'string'},
                                'postgres': {'type': 'string'},
                            },
                        }
                    ),
                    '503': _json(_OBJECT, 'The warehouse does not answer.'),
                },
            }
        },
        '/metrics': {
            'get': {
                'summary': "The service's Prometheus metrics.",
                'operationId': 'metrics',
                'responses': {
                    '200': {
                        'description': 'Prometheus text format',
                        'content': {'text/plain': {'schema': {'type': 'string'}}},
                    },
                    '401': _ERROR,
                },
            }
        },
        '/runs': {
            'get': {
                'summary': 'Recent runs and their summaries, newest first.',
                'operationId': 'runs',
                'parameters': _page_params(),
                'responses': {
                    '200': _json(
                        {
                            'type': 'object',
                            'required': ['runs'],
                            'properties': {'runs': {'type': 'array', 'items': _RUN}},
                        }
                    ),
                    '400': _ERROR,
                    '401': _ERROR,
                },
            }
        },
        '/runs/{run_id}': {
            'get': {
                'summary': "One run's summary.",
                'operationId': 'run',
                'parameters': [
                    {'name': 'run_id', 'in': 'path', 'required': True, 'schema': {'type': 'string'}}
                ],
                'responses': {'200': _json(_RUN), '401': _ERROR, '404': _ERROR},
            }
        },
        '/dead-letters': {
            'get': {
                'summary': 'Dead letters in the warehouse, newest first, filtered.',
                'operationId': 'dead_letters',
                'parameters': [
                    *({'name': n, 'in': 'query', 'schema': _TEXT} for n in DEAD_LETTER_FILTERS),
                    *_time_params(),
                    *_page_params(),
                ],
                'responses': {
                    '200': _json(
                        {
                            'type': 'object',
                            'required': ['dead_letters'],
                            'properties': {
                                'dead_letters': {'type': 'array', 'items': _DEAD_LETTER}
                            },
                        }
                    ),
                    '400': _ERROR,
                    '401': _ERROR,
                    '503': _ERROR,
                },
            }
        },
        '/dead-letters/replay': {
            'post': {
                'summary': 'Re-feed dead letters through the pipeline (after a fix); those that '
                'fail again stay, with their attempts counted.',
                'operationId': 'replay_dead_letters',
                'requestBody': {
                    'required': True,
                    'content': {
                        'application/json': {
                            'schema': {
                                'type': 'object',
                                'additionalProperties': False,
                                # Which dead letters: by id, by filter, or both.
                                'anyOf': [{'required': ['ids']}, {'required': ['filter']}],
                                'properties': {
                                    'ids': {
                                        'type': 'array',
                                        'items': {'type': 'string', 'maxLength': 64},
                                        'maxItems': MAX_REPLAY,
                                    },
                                    'filter': {
                                        'type': 'object',
                                        'additionalProperties': False,
                                        'minProperties': 1,
                                        'properties': {n: _TEXT for n in DEAD_LETTER_FILTERS},
                                    },
                                    'limit': {
                                        'type': 'integer',
                                        'minimum': 1,
                                        'maximum': MAX_REPLAY,
                                    },
                                },
                            }
                        }
                    },
                },
                'responses': {
                    '200': _json(
                        {
                            'type': 'object',
                            'required': ['replayed', 'recovered', 'failed_again'],
                            'properties': {
                                'replayed': {'type': 'integer'},
                                'recovered': {'type': 'array', 'items': {'type': 'string'}},
                                'failed_again': {'type': 'array', 'items': _OBJECT},
                                'erased': {'type': 'array', 'items': {'type': 'string'}},
                            },
                        }
                    ),
                    '400': _ERROR,
                    '401': _ERROR,
                    '404': _ERROR,
                    '409': _ERROR,
                    '503': _ERROR,
                },
            }
        },
        '/queries': {
            'get': {
                'summary': 'The allow-listed read-only queries.',
                'operationId': 'queries',
                'responses': {
                    '200': _json({'type': 'object', 'additionalProperties': _OBJECT}),
                    '401': _ERROR,
                },
            }
        },
        **{f'/queries/{name}': _query_path(name, q) for name, q in NAMED.items()},
    }
    return {
        'openapi': '3.0.3',
        'info': {'title': 'beam_pipelines ops API', 'version': '0.1.0'},
        'components': {'securitySchemes': {'bearer': {'type': 'http', 'scheme': 'bearer'}}},
        'security': auth,
        'paths': paths,
    }
